"""Where a job's subtitles go, so two jobs never write the same file or escape the folder."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .settings import Settings


def output_folder(input_path: Path, settings: Settings) -> Path:
    if settings.output_dir:
        return Path(os.path.abspath(os.path.expanduser(settings.output_dir)))
    return input_path.parent


def choose_base(
    input_path: Path, settings: Settings, taken: Iterable[str]
) -> tuple[str, str | None]:
    """Pick the output base (path without extension) and, when it had to change, why.

    `talk.mp4` and `talk.mkv` in one folder would both write `talk.srt`; the second keeps its
    container suffix (`talk.mkv.srt`). `a/talk.mp4` and `b/talk.mp4` into one --output-dir
    mirror their parent folder (`b/talk.srt`). A number is the last resort.
    """
    taken = set(taken)
    folder = output_folder(input_path, settings)
    candidates = [folder / input_path.stem, folder / input_path.name]
    if settings.output_dir:
        candidates.append(folder / input_path.parent.name / input_path.stem)
    candidates += [folder / f"{input_path.stem} ({n})" for n in range(2, 1000)]
    for i, candidate in enumerate(candidates):
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


def output_targets(base: str, settings: Settings) -> list[OutputTarget]:
    """`base.srt` for the transcript and `base.LANG.srt` per translation, per format."""
    targets = []
    for fmt in settings.formats:
        targets.append(OutputTarget(Path(f"{base}.{fmt}"), fmt, None))
        targets += [
            OutputTarget(Path(f"{base}.{lang}.{fmt}"), fmt, lang) for lang in settings.translate_to
        ]
    return targets


def input_signature(size: int, mtime: float) -> str:
    return f"{size}:{int(mtime * 1000)}"
