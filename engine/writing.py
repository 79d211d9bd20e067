"""Writing a job's subtitles without ever replacing a person's own files.

A subtitle next to a video may be the user's: made by hand, from another tool, or written by
subq and then corrected. subq replaces a file only where it is subq's as subq wrote it (the
state file's `written` table holds every file's size:hash); any other existing file is kept
and the job says so, unless `--force`. A file that is gone is simply written again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .formats import Document, render
from .options import WriteOptions
from .outputs import OutputTarget, file_sum, text_sum
from .store import Store
from .subtitles import write_atomic


def keep_reason(path: Path, recorded: str | None) -> str | None:
    """Why the file at `path` must be kept, or None when subq may write it."""
    present = file_sum(path)
    if present is None or present == recorded:
        return None
    if recorded is None:
        return f"{path.name} was not written by subq; kept (use --force to replace)"
    return f"{path.name} was edited after subq wrote it; kept (use --force to replace)"


def write_targets(
    store: Store,
    doc: Document,
    targets: list[OutputTarget],
    options: WriteOptions,
    force: bool,
    warn: Callable[[str], None],
) -> dict[str, str]:
    """Write `doc` to each target in its format, atomically, laid out as `options` say,
    keeping the user's files (each named once through `warn`); returns path -> size:hash
    of every target as it now is (kept ones included, so the job is done while they stay
    as they are)."""
    recorded = store.written_sums([str(t.path) for t in targets])
    sums: dict[str, str] = {}
    wrote: dict[str, str] = {}
    for target in targets:
        key = str(target.path)
        reason = None if force else keep_reason(target.path, recorded.get(key))
        if reason is not None:
            warn(reason)
            sums[key] = file_sum(target.path) or ""
            continue
        text = render(target.fmt, doc, options)
        try:
            write_atomic(target.path, text)
        except OSError as exc:
            exc.filename = exc.filename or key  # a write error names no file
            raise
        sums[key] = wrote[key] = text_sum(text)
    if wrote:
        store.record_written(wrote)
    return sums
