"""Where a job's subtitles go, so two jobs never write the same file or escape the folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path

from .options import WriteOptions
from .settings import Settings
from .store import DoneRecord


def output_folder(input_path: Path, options: WriteOptions) -> Path:
    if options.output_dir:
        return Path(os.path.abspath(os.path.expanduser(options.output_dir)))
    return input_path.parent


def choose_base(
    input_path: Path, options: WriteOptions, taken: Container[str]
) -> tuple[str, str | None]:
    """Pick the output base (path without extension) and, when it had to change, why.

    `talk.mp4` and `talk.mkv` in one folder would both write `talk.srt`; the second keeps its
    container suffix (`talk.mkv.srt`). `a/talk.mp4` and `b/talk.mp4` into one --output-dir
    mirror their parent folder (`b/talk.srt`). A number is the last resort.
    """
    folder = output_folder(input_path, options)
    for i, candidate in enumerate(_candidates(input_path, folder, bool(options.output_dir))):
        base = str(candidate)
        if not _inside(candidate, folder):
            continue
        if base not in taken:
            note = (
                None
                if i == 0
                else (
                    f"{input_path.name}: output renamed to {candidate.name}.* so it does not "
                    f"overwrite another job's subtitles"
                )
            )
            return base, note
    raise ValueError(f"{input_path}: no free output name")


def _candidates(input_path: Path, folder: Path, mirrored: bool) -> Iterator[Path]:
    """Output bases in order of preference, made one at a time: the first is nearly
    always free, and building a thousand numbered names for each of 10,000 files added at
    once held the queue for seconds."""
    yield folder / input_path.stem
    yield folder / input_path.name
    if mirrored:
        yield folder / input_path.parent.name / input_path.stem
    for n in range(2, 1000):
        yield folder / f"{input_path.stem} ({n})"


def _inside(candidate: Path, folder: Path) -> bool:
    if any(part in (".", "..") for part in candidate.relative_to(folder).parts):
        return False
    resolved = Path(os.path.abspath(candidate))
    return resolved != folder and os.path.commonpath([resolved, folder]) == str(folder)


@dataclass(frozen=True)
class OutputTarget:
    path: Path
    fmt: str
    lang: str | None  # None: the transcript itself


def output_targets(base: str, options: WriteOptions) -> list[OutputTarget]:
    """`base.srt` for the transcript and `base.LANG.srt` per translation, per format."""
    targets = []
    for fmt in options.formats:
        spoken = f".{options.transcript_lang}" if options.transcript_lang else ""
        targets.append(OutputTarget(Path(f"{base}{spoken}.{fmt}"), fmt, None))
        targets += [
            OutputTarget(Path(f"{base}.{lang}.{fmt}"), fmt, lang) for lang in options.languages
        ]
    return targets


# Inputs up to this size are hashed whole; larger ones by size, mtime and three samples.
# Measured here on a 2 GB file (docs/benchmarks.md, section 9): BLAKE2b of the whole file
# 2.5 s from the page cache and 2.7 s cold on local disk (far longer on a network disk), the
# three 1 MiB samples 8 ms. Hashing every 2 GB film whole on every rerun is not worth it; a
# different recording with the same size, date and first, middle and last MiB does not occur.
WHOLE_FILE_HASH_LIMIT = 32 * 1024 * 1024
SAMPLE_BYTES = 1024 * 1024


def content_fingerprint(path: Path) -> str:
    """What the input is, so stored work is tied to the file, not to its path.

    A path can be given a different file (copied over, re-encoded, replaced while a job was
    interrupted); reusing a transcript or checkpoint then writes another file's subtitles.
    Size, modification time and a hash together: the hash catches other content with a
    restored date, the time catches an in-place edit between the samples of a large file.
    """
    st = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if st.st_size <= WHOLE_FILE_HASH_LIMIT:
            while chunk := f.read(SAMPLE_BYTES):
                digest.update(chunk)
        else:
            for offset in (0, (st.st_size - SAMPLE_BYTES) // 2, st.st_size - SAMPLE_BYTES):
                f.seek(offset)
                digest.update(f.read(SAMPLE_BYTES))
    return f"{st.st_size}:{st.st_mtime_ns // 1_000_000}:{digest.hexdigest()}"


def text_sum(text: str) -> str:
    """Size and hash of a subtitle file's text as written (UTF-8)."""
    return _bytes_sum(text.encode("utf-8"))


def file_sum(path: Path) -> str | None:
    """Size and hash of a written subtitle file (small), or None when it is gone."""
    try:
        return _bytes_sum(path.read_bytes())
    except OSError:
        return None


def _bytes_sum(data: bytes) -> str:
    return f"{len(data)}:{hashlib.blake2b(data, digest_size=16).hexdigest()}"


def done_key(settings: Settings, base: str) -> str:
    """What the finished outputs were made with: output settings and where they went."""
    return hashlib.sha256(f"{settings.output_key()}|{base}".encode()).hexdigest()[:16]


def outputs_current(
    record: DoneRecord | None, fingerprint: str, key: str, targets: list[OutputTarget]
) -> bool:
    """Done means the outputs exist as they were written, from this content and settings.

    With no record at all (subtitles that were there before subq ran, or from an older
    queue) existing files are taken as the user's and kept: only `--force` redoes them.
    """
    if record is None:
        return all(t.path.exists() for t in targets)
    if (record.input, record.key) != (fingerprint, key):
        return False
    return all(file_sum(t.path) == record.sums.get(str(t.path)) for t in targets)
