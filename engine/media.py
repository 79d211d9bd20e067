"""Finding, probing and decoding media in-process with PyAV (no ffmpeg program needed).

Files are opened as Python file objects, never by name, so FFmpeg cannot read a name like
`concat:x.mp4` or `-x.mp4` as a protocol or an option. Every failure becomes a `MediaError`
whose message names the file and the cause in one line.
"""

from __future__ import annotations

import errno
import glob
import os
from collections.abc import Iterable
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
    """Files stay as given, folders become their media files (sorted), globs are expanded.

    A folder without media and a missing path are kept as they are, so they become jobs that
    fail with a clear reason instead of vanishing silently.
    """
    out: list[Path] = []
    for arg in args:
        expanded = os.path.expanduser(arg)
        path = Path(expanded)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_media(p))
            out.extend(found or [path])
        elif not path.exists() and glob.has_magic(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            out.extend(Path(m) for m in matches if Path(m).is_file()) if matches else out.append(
                path
            )
        else:
            out.append(path)
    return [absolute(p) for p in out]


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
    """The first audio stream as mono float32 at `sample_rate`, the array whisper expects."""
    import av

    path = Path(path)
    chunks: list[np.ndarray] = []
    with _open(path) as f:
        try:
            with av.open(f, mode="r", metadata_errors="ignore") as container:
                if not container.streams.audio:
                    raise MediaError(f"{path}: no audio stream (nothing to transcribe)")
                stream = container.streams.audio[0]
                stream.thread_type = "AUTO"
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                try:
                    for frame in container.decode(stream):
                        for out in resampler.resample(frame):
                            chunks.append(out.to_ndarray().reshape(-1))
                except (av.error.InvalidDataError, av.error.EOFError):
                    if not chunks:
                        raise
                    # A truncated file: keep what decoded; the tail is lost, not the job.
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
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
    if not chunks:
        raise MediaError(f"{path}: the audio stream is empty (zero length)")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if audio.size < sample_rate // 100:
        raise MediaError(f"{path}: the audio stream is empty (zero length)")
    return audio
