"""Files that hold a person's transcripts are theirs alone on a shared server.

The state file carries every transcript and translation, and the log names every file a
person worked on: with the usual umask (022) both would be readable by every user of the
machine. So subq makes its own folders 0700 and its own files 0600 whatever the umask.
Subtitles are the user's outputs, next to their videos: they follow the user's umask, as
any file a program writes for them does.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

_umask_lock = threading.Lock()


def umask() -> int:
    """The process's umask, read without changing it where the system can say (Linux);
    elsewhere set and restored under a lock, the only portable way to read it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _umask_lock:
        old = os.umask(0o077)
        os.umask(old)
        return old


def user_file_mode() -> int:
    """The mode a new file of the user's gets under their umask (0644 under 022)."""
    return 0o666 & ~umask()


def private_dir(path: Path) -> None:
    """Make `path` (and any missing parents) with 0700 for the folders subq makes. An
    existing folder is tightened only if it is subq's own (named `subq`, owned by us): a
    folder the user chose for `--state` (their home, /tmp) keeps its mode."""
    path = Path(path)
    existed = path.exists()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not existed or path.name == "subq":
        with contextlib.suppress(OSError):
            if path.stat().st_uid == os.getuid():
                os.chmod(path, 0o700)


def private_file(path: Path) -> None:
    """Create `path` empty with 0600 if it is missing; tighten it to 0600 if it is ours."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with contextlib.suppress(OSError):
        if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)


def open_private_log(path: Path):  # -> BinaryIO
    """Open a log for appending, 0600 (a worker's stdout and stderr go there)."""
    private_file(path)
    return open(path, "ab")
