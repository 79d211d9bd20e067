"""Fault injection for tests, driven through the real code paths.

`SUBQ_FAULTS` holds comma-separated `point:kind[:count[:match]]` entries, for example
`write:ENOSPC`, `transcribe:OOM:1` or `open:EACCES::secret` (only targets containing
"secret"; an empty count means every time). It is read from the environment so a
test can inject into a child process as easily as into its own. Production runs never set it.

Kinds: an errno name raises that OSError; `OOM` raises an out-of-memory error (no torch
needed: the worker reports it as kind "oom"); `KILL` ends the process with SIGKILL (a worker
that dies mid-file; at the point `idle`, one that dies between calls); `HANG` never returns
(a stuck native call: no message, no Stop read); at the point `reply` (a worker's
checkpoint about to be sent), `GARBLE` sends a frame that cannot be read and `MISMATCH` a
reply naming another call. Counts are per run, not per process: when `SUBQ_FAULT_COUNTS` names a
file (the engine gives its workers one), the uses are counted there, under a file lock, so a
one-shot fault fires once however many workers come and go.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import threading
import time

_lock = threading.Lock()
_used: dict[str, int] = {}


def _entries() -> list[tuple[str, str, int | None, str]]:
    spec = os.environ.get("SUBQ_FAULTS", "")
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":", 3)
        count = int(parts[2]) if len(parts) > 2 and parts[2] else None
        match = parts[3] if len(parts) > 3 else ""
        out.append((parts[0], parts[1] if len(parts) > 1 else "", count, match))
    return out


def maybe_fail(point: str, target: str = "") -> None:
    """Raise the injected fault for `point`, if one is armed (and not used up)."""
    for name, kind, count, match in _entries():
        if name != point or match not in target:
            continue
        if not _use(f"{name}:{kind}:{match}", count):
            continue
        if kind == "OOM":
            raise InjectedOutOfMemory("CUDA out of memory (injected by SUBQ_FAULTS)")
        if kind == "KILL":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "HANG":
            while True:
                time.sleep(3600)
        if kind in CHANNEL_FAULTS:
            raise InjectedChannelFault(kind)
        code = getattr(errno, kind, None)
        if code is None:
            raise RuntimeError(f"injected fault at {point}")
        raise OSError(code, os.strerror(code), target or None)


CHANNEL_FAULTS = ("GARBLE", "MISMATCH")


class InjectedChannelFault(Exception):
    """A worker's reply to be sent wrong (`kind`: GARBLE or MISMATCH), by the worker's send."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class InjectedOutOfMemory(MemoryError):
    """Stands for torch's OutOfMemoryError (same name pattern, same words)."""


def _use(item: str, count: int | None) -> bool:
    """Count one use of `item`; False when its `count` is used up (per run, see above)."""
    shared = os.environ.get("SUBQ_FAULT_COUNTS")
    with _lock:
        if not shared:
            used = _used.get(item, 0)
            if count is not None and used >= count:
                return False
            _used[item] = used + 1
            return True
        with open(shared, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            counts: dict[str, int] = {}
            with contextlib.suppress(ValueError):
                counts = json.loads(f.read() or "{}")
            used = counts.get(item, 0)
            if count is not None and used >= count:
                return False
            counts[item] = used + 1
            f.seek(0)
            f.truncate()
            f.write(json.dumps(counts))
            return True


def injected_free_bytes() -> int | None:
    """A fake free-GPU-memory reading (`SUBQ_FAKE_FREE_BYTES`), for the memory-wait path."""
    value = os.environ.get("SUBQ_FAKE_FREE_BYTES")
    if not value:
        return None
    path = value.removeprefix("@")
    if value.startswith("@"):  # a file whose content a test can change while we run
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None
    return int(value)


def reset() -> None:
    with _lock:
        _used.clear()
