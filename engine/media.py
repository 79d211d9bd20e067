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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import faults

SAMPLE_RATE = 16_000
MEDIA_EXTENSIONS = frozenset(
    [
        ".mp4",
        ".mkv",
        ".mov",
        ".avi",
        ".webm",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".flv",
        ".wmv",
        ".3gp",
        ".mp3",
        ".wav",
        ".flac",
        ".m4a",
        ".aac",
        ".ogg",
        ".oga",
        ".opus",
        ".wma",
        ".aiff",
        ".aif",
        ".amr",
    ]
)


class MediaError(Exception):
    """A user's file cannot be used; str() is the one-line message to show."""


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    duration: float | None
    size: int
    mtime: float
    container: str


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


def _open(path: Path):  # -> BinaryIO
    try:
        faults.maybe_fail("open", str(path))
        return open(path, "rb")
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MediaError(f"{path}: is a folder with no media files") from None
    except PermissionError:
        raise MediaError(f"{path}: permission denied (cannot read the file)") from None
    except OSError as exc:
        raise MediaError(f"{path}: cannot open: {exc.strerror or exc}") from None


def probe(path: Path) -> MediaInfo:
    """Check the file is readable media with an audio stream; cheap (reads the header only)."""
    import av

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{path}: no such file") from None
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
        except MediaError:
            raise
        except (av.error.InvalidDataError, av.error.EOFError):
            raise MediaError(f"{path}: not a media file, or the file is corrupt") from None
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: cannot read media: {_ffmpeg_reason(exc)}") from None
    return MediaInfo(
        path=path, duration=duration, size=st.st_size, mtime=st.st_mtime, container=fmt
    )


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0]


def decode_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The first audio stream as mono float32 at `sample_rate`, the array whisper expects.

    The samples go straight into one buffer (`_Samples`), so the peak is about the samples
    themselves (3.84 MB a minute at 16 kHz) whatever the length. A list of frames joined at
    the end cost 2.2x that at the peak and left the frames' small blocks in the heap after
    (+242 MiB RSS for 30 minutes, of which 234 stayed; issue 14.5).
    """
    samples: _Samples | None = None

    def opened(duration: float | None) -> None:
        nonlocal samples
        samples = _Samples(duration, sample_rate)

    for chunk in _frames(Path(path), sample_rate, opened):
        assert samples is not None
        samples.append(chunk)
    if samples is None or samples.size < sample_rate // 100:
        raise MediaError(f"{path}: the audio stream is empty (zero length)")
    return samples.take()


def stream_audio(
    path: Path, chunk_seconds: float = 30.0, sample_rate: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """The same samples as `decode_audio`, as consecutive chunks of `chunk_seconds` (the last
    shorter), decoded as they are asked for: memory stays that of one chunk however long the
    file. Why: holding a whole file's samples costs 3.66 MiB a minute (440 MiB for two
    hours), more than issue 14.5 allows a long file over a short one; a loop that reads its
    30 s windows from here (a first pass for the features' whole-file maximum, a second for
    the windows) holds none of it. Concatenated, the chunks equal `decode_audio` exactly.
    """
    size = max(1, round(chunk_seconds * sample_rate))
    buf, fill, total = np.empty(size, dtype=np.float32), 0, 0
    for chunk in _frames(Path(path), sample_rate, lambda _duration: None):
        while chunk.size:
            take = min(size - fill, chunk.size)
            buf[fill : fill + take] = chunk[:take]
            fill, total, chunk = fill + take, total + take, chunk[take:]
            if fill == size:
                yield buf
                buf, fill = np.empty(size, dtype=np.float32), 0
    if total < sample_rate // 100:
        raise MediaError(f"{path}: the audio stream is empty (zero length)")
    if fill:
        yield buf[:fill].copy()


def _frames(
    path: Path, sample_rate: int, opened: Callable[[float | None], None]
) -> Iterator[np.ndarray]:
    """The first audio stream's frames as mono float32 views, every failure a `MediaError`.

    `opened` gets the stream's duration (a header's claim, or None) before the first frame.
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
                opened(_duration(container, stream))
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


class _Samples:
    """A growing float32 buffer filled in place: one whole-file array, never two.

    Sized from the stream's duration plus a second (pages never written cost no memory), or
    ten minutes when it is unknown; it grows by half again when the duration was short, and
    is trimmed at the end. Both go through `ndarray.resize`, i.e. realloc, which for an array
    this big remaps its pages (mremap) instead of copying them, so neither doubles the peak.
    """

    def __init__(self, duration: float | None, sample_rate: int) -> None:
        seconds = duration + 1 if duration and duration > 0 else 600
        self._data = np.empty(int(seconds * sample_rate), dtype=np.float32)
        self.size = 0

    def append(self, chunk: np.ndarray) -> None:
        chunk = chunk.reshape(-1)  # PyAV's (channels, samples), or a plane's flat view
        end = self.size + chunk.size
        if end > self._data.size:
            self._data.resize(max(end, self._data.size * 3 // 2), refcheck=False)
        self._data[self.size : end] = chunk
        self.size = end

    def take(self) -> np.ndarray:
        """The samples, trimmed in place; the buffer is handed over, not copied."""
        data, self._data = self._data, np.empty(0, dtype=np.float32)
        data.resize(self.size, refcheck=False)
        return data
