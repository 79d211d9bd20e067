"""Finding, probing and decoding media in-process with PyAV (no ffmpeg program needed).

Files are opened as Python file objects, never by name, so FFmpeg cannot read a name like
`concat:x.mp4` or `-x.mp4` as a protocol or an option. Every failure becomes a `MediaError`
whose message names the file and the cause in one line.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import faults
from .options import SAMPLE_RATE

# fmt: off
MEDIA_EXTENSIONS = frozenset([
    ".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".flv",
    ".wmv", ".3gp", ".mp3", ".wav", ".flac", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma",
    ".aiff", ".aif", ".amr",
])
# fmt: on


class MediaError(Exception):
    """A user's file cannot be used; str() is the one-line message to show."""


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    duration: float | None
    size: int
    mtime: float
    container: str
    # the language of each subtitle stream inside the file ("" where it names none)
    subtitles: tuple[str, ...] = ()


def is_media(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS


def expand_paths(args: Iterable[str]) -> list[Path]:
    """Each argument as the files it names (`expand_path`), in order.

    A folder without media, a glob without matches and a missing path are kept as they are,
    so they become jobs that fail with a clear reason instead of vanishing silently.
    """
    out: list[Path] = []
    for arg in args:
        out.extend(expand_path(arg) or [absolute(Path(os.path.expanduser(arg)))])
    return out


def expand_path(arg: str, cancelled: Callable[[], bool] = lambda: False) -> list[Path]:
    """The files one user argument names; [] when it names none. The one set of rules.

    A file is kept as given (whatever its extension: the user named it). A folder becomes
    the media files under it, hidden ones included; a glob (`**` for any depth) the media
    files it matches, with the shell's rule that `*` skips names starting with a dot. Both
    walk with the same rules, so a tree of links cannot hang them or repeat a file: a link
    is followed once, never into a folder already walked (no loop), and each real file
    (its resolved path) is listed once, under the name without links where there is one.
    `cancelled` is polled between folders, for a caller that may stop early (partial list).
    Paths are absolute, links kept, sorted.
    """
    expanded = os.path.expanduser(arg)
    path = Path(expanded)
    if path.is_file():
        return [absolute(path)]
    if path.is_dir():
        return _walk(path, ("**", "*"), hidden=True, cancelled=cancelled)
    if path.exists() or not glob.has_magic(expanded):
        return []
    root, parts = _split_glob(expanded)
    return _walk(root, parts, hidden=False, cancelled=cancelled)


def _split_glob(pattern: str) -> tuple[Path, tuple[str, ...]]:
    """The pattern's leading plain folders (where the walk starts) and its remaining parts."""
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    rest: list[str] = []
    for part in parts[first:]:
        if not (part == "**" and rest and rest[-1] == "**"):  # `**/**` is `**`
            rest.append(part)
    if rest[-1] == "**":  # a trailing `**` names everything below: its files here
        rest.append("*")
    return Path(*parts[:first]) if first else Path("."), tuple(rest)


def _walk(
    root: Path, parts: tuple[str, ...], *, hidden: bool, cancelled: Callable[[], bool]
) -> list[Path]:
    """Media files under `root` whose path below it matches `parts` ("**": any folders).

    Why it terminates: a folder is read at most once per pattern part, known by its
    (device, inode), so a link back up the tree finds its target already read. Folders
    reached without a link are all read before any reached through one, so a real file's
    name wins over a link's whatever the sort order.
    """
    plain: list[tuple[str, int, bool]] = [(os.path.abspath(root), 0, False)]  # str: 2x faster
    linked: deque[tuple[str, int, bool]] = deque()  # (folder, pattern part, reached via a link)
    read: set[tuple[int, int, int]] = set()
    found: dict[str, tuple[str, bool]] = {}  # resolved path -> (name, via a link)
    while (plain or linked) and not cancelled():
        folder, i, via_link = plain.pop() if plain else linked.popleft()
        part, last = parts[i], i + 1 == len(parts)
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino, i) in read:
                continue
            read.add((st.st_dev, st.st_ino, i))
            children = _children(folder, part, hidden)
            real_folder = os.path.realpath(folder)  # once a folder, not once a file
        except OSError:
            continue
        if part == "**":
            (linked if via_link else plain).append((folder, i + 1, via_link))  # `**` = no folder
        for name, is_link, is_dir, is_file in children:
            child, child_via = os.path.join(folder, name), via_link or is_link
            if part == "**" or not last:
                if is_dir:
                    (linked if child_via else plain).append(
                        (child, i if part == "**" else i + 1, child_via)
                    )
            elif is_file and os.path.splitext(name)[1].lower() in MEDIA_EXTENSIONS:
                plain_name = not is_link and name not in (".", "..")
                real = os.path.join(real_folder, name) if plain_name else os.path.realpath(child)
                if real not in found or (found[real][1] and not child_via):
                    found[real] = (child, child_via)
    # `..` after a link is not the lexical parent: name a file reached through one by its real
    # path; other names only lose `.` and doubled slashes
    return sorted(
        Path(real if f"{os.sep}..{os.sep}" in name else os.path.normpath(name))
        for real, (name, _via) in found.items()
    )


def _children(folder: str, part: str, hidden: bool) -> list[tuple[str, bool, bool, bool]]:
    """(name, is a link, is a folder, is a file) of the entries of `folder` matching `part`.

    A plain part (`..` included) is looked up, as glob does, not listed; `*` and `**` skip
    dot names unless `hidden` or the part itself starts with a dot (the shell's rule).
    """
    if not glob.has_magic(part):
        child = os.path.join(folder, part)
        if not os.path.lexists(child):
            return []
        return [(part, os.path.islink(child), os.path.isdir(child), os.path.isfile(child))]
    out = []
    with os.scandir(folder) as it:
        for entry in sorted(it, key=lambda e: e.name):  # links queued a-z: the first is named
            name = entry.name
            if not hidden and name.startswith(".") and not part.startswith("."):
                continue
            if part != "**" and not fnmatch.fnmatchcase(name, part):
                continue
            try:
                out.append((name, entry.is_symlink(), entry.is_dir(), entry.is_file()))
            except OSError:
                continue
    return out


def absolute(path: Path) -> Path:
    """Absolute without resolving symlinks (a user's name for a file is kept)."""
    return Path(os.path.abspath(path))


def missing_file(path: str | Path) -> str:
    """Why `path` names no file: a glob that matched nothing is kept as a job of its own."""
    return "no file matches this pattern" if glob.has_magic(str(path)) else "no such file"


def _open(path: Path):  # -> BinaryIO
    try:
        faults.maybe_fail("open", str(path))
        return open(path, "rb")
    except FileNotFoundError:
        raise MediaError(f"{path}: {missing_file(path)}") from None
    except IsADirectoryError:
        raise MediaError(f"{path}: is a folder with no media files") from None
    except PermissionError:
        raise MediaError(f"{path}: permission denied (cannot read the file)") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot open: {exc.strerror or exc}") from None


def probe(path: Path) -> MediaInfo:
    """Check the file is readable media with an audio stream; cheap (reads the header only).

    A demuxer crash here takes its process down, so the engine and the app's job table probe
    through prober.py's reader child (`probe_isolated`), which runs this; workers run it too."""
    import av

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path}: {missing_file(path)}") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot open: {exc.strerror or exc}") from None
    if path.is_dir():
        raise MediaError(f"{path}: is a folder with no media files")
    if st.st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")
    with _open(path) as f:
        try:
            with av.open(f, mode="r", metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise MediaError(f"{path}: no audio stream (nothing to transcribe)")
                stream = container.streams.audio[0]
                duration = _duration(container, stream)
                fmt = container.format.name
                subtitles = tuple(_language(s) for s in container.streams.subtitles)
        except (av.error.InvalidDataError, av.error.EOFError):
            raise MediaError(f"{path}: not a media file, or the file is corrupt") from None
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: cannot read media: {_ffmpeg_reason(exc)}") from None
    return MediaInfo(path, duration, st.st_size, st.st_mtime, fmt, subtitles)


def _language(stream) -> str:
    """A stream's language tag as written ("eng", "fre"), "" where none or "und"."""
    tag = str((stream.metadata or {}).get("language", "")).strip().lower()
    return "" if tag in ("", "und") else tag


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0]


def decode_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio stream as mono float32 at `sample_rate`, the whole array at once."""
    return AudioSource(Path(path), sample_rate).read_all()


def open_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> AudioSource:
    """`path`'s audio as an `AudioSource`, its first 30 s decoded already, so a file that is
    no media, has no audio or an empty stream fails here, as `decode_audio` would."""
    source = AudioSource(Path(path), sample_rate)
    source.read(0, 30 * sample_rate)
    return source


class AudioSource:
    """A file's first audio stream as 16 kHz mono float32, decoded forward as it is read.

    Why: a whole file's samples cost 3.66 MiB a minute (440 MiB for two hours), more than
    issue 14.5 allows a long file over a short one. The transcribe loops read one window at
    a time from here. `read(start, n)` gives samples [start, start + n), zeros past the end,
    and lets go of everything before `start`: reads only move forward (a read behind the
    last one raises ValueError), and what is held is the latest read plus one decoded frame.
    A second pass (the VAD's, before the windows) is another source: `reopen()`.
    """

    def __init__(self, path: Path, sample_rate: int = SAMPLE_RATE) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.claimed = probe(self.path).duration  # the header's, until the end is decoded
        self._frames: Iterator[np.ndarray] | None = _frames(self.path, sample_rate)
        self._buf = np.empty(0, dtype=np.float32)
        self._base = 0  # the file's sample index of _buf[0]
        self._fill = 0  # samples in _buf
        self._decoded = 0  # samples the decoder has given (== _base + _fill while _fill > 0)
        self._length: int | None = None

    @property
    def length(self) -> int | None:
        """Samples in the file, once decoding reached its end; None before."""
        return self._length

    @property
    def duration(self) -> float:
        """Seconds: exact once the end was decoded, the header's claim before."""
        if self._length is not None:
            return self._length / self.sample_rate
        return self.claimed or 0.0

    def length_within(self, limit: int) -> int:
        """min(the file's length, `limit`), decoding up to `limit` to know."""
        self._decode_to(limit)
        return limit if self._length is None else min(self._length, limit)

    def read(self, start: int, count: int) -> np.ndarray:
        if start < self._base:
            raise ValueError(f"read at {start} behind {self._base}: an AudioSource reads forward")
        self._drop_before(start)
        self._decode_to(start + count)
        out = np.zeros(count, dtype=np.float32)
        have = max(0, min(count, self._base + self._fill - start))
        out[:have] = self._buf[start - self._base : start - self._base + have]
        return out

    def read_all(self) -> np.ndarray:
        """Every sample, decoded into one buffer grown in place (sized from the header's
        duration plus a second; `ndarray.resize` is realloc, which remaps a big array's pages
        rather than copying them), so the peak is the samples themselves. A list of frames
        joined at the end cost 2.2x that and left its blocks in the heap (issue 14.5)."""
        if self._base or self._fill:
            raise ValueError("read_all on a source already read")
        if self.claimed and self.claimed > 0:
            self._buf.resize(int((self.claimed + 1) * self.sample_rate), refcheck=False)
        self._decode_to(sys.maxsize)
        data, self._buf = self._buf, np.empty(0, dtype=np.float32)
        data.resize(self._fill, refcheck=False)
        return data

    def reopen(self) -> AudioSource:
        return AudioSource(self.path, self.sample_rate)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]
            self._frames = None
        self._buf = np.empty(0, dtype=np.float32)

    def _drop_before(self, start: int) -> None:
        drop = min(start - self._base, self._fill)
        if drop > 0:
            rest = self._fill - drop
            self._buf[:rest] = self._buf[drop : self._fill].copy()
            self._base, self._fill = self._base + drop, rest
        if self._fill == 0:
            self._base = start  # samples before it are skipped as they are decoded

    def _decode_to(self, end: int) -> None:
        while self._base + self._fill < end and self._frames is not None:
            chunk = next(self._frames, None)
            if chunk is None:
                self._frames, self._length = None, self._decoded
                if self._length < self.sample_rate // 100:
                    raise MediaError(f"{self.path}: the audio stream is empty (zero length)")
                break
            chunk = chunk.reshape(-1)
            skip = min(chunk.size, max(0, self._base - self._decoded))  # read past already
            self._decoded += chunk.size
            end_fill = self._fill + chunk.size - skip
            if end_fill > self._buf.size:
                self._buf.resize(max(end_fill, self._buf.size * 3 // 2), refcheck=False)
            self._buf[self._fill : end_fill] = chunk[skip:]
            self._fill = end_fill


def _frames(path: Path, sample_rate: int) -> Iterator[np.ndarray]:
    """The first audio stream's frames as mono float32 views, every failure a `MediaError`.

    Each view is valid until the next one is asked for (it is the resampler's own buffer).
    """
    import av

    with _open(path) as f:
        try:
            with av.open(f, mode="r", metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise MediaError(f"{path}: no audio stream (nothing to transcribe)")
                stream = container.streams.audio[0]
                stream.thread_type = "AUTO"
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                decoded = False
                try:
                    for frame in container.decode(stream):
                        for out in resampler.resample(frame):
                            decoded = True
                            yield np.frombuffer(out.planes[0], np.float32, out.samples)
                except (av.error.InvalidDataError, av.error.EOFError):
                    if not decoded:
                        raise
                    # A truncated file: keep what decoded; the tail is lost, not the job.
                for out in resampler.resample(None):
                    yield np.frombuffer(out.planes[0], np.float32, out.samples)
        except MediaError:
            raise
        except (av.error.InvalidDataError, av.error.EOFError):
            raise MediaError(f"{path}: not a media file, or the file is corrupt") from None
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: cannot decode audio: {_ffmpeg_reason(exc)}") from None
        except OSError as exc:
            if exc.errno == errno.EACCES:
                raise MediaError(f"{path}: permission denied (cannot read the file)") from None
            raise MediaError(f"{path}: read error: {exc.strerror or exc}") from None
