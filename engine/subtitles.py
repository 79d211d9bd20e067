"""Cues, SRT/VTT text, and atomic writes.

A cue is the unit every subtitle format shows. Where segments carry their words the cues are
cut at them (cue_builder.py); here is the rule for segments without word times: a long
segment is split at word boundaries in proportion to characters, into cues that follow
common subtitle practice (at most two lines of 42 characters, at most 7 s, never
overlapping or zero-length; all three are settings, options.Layout). Lines are broken where
they balance. Files are written to a temp file in the target folder, fsynced and renamed
over the target, so a reader or a killed process only ever sees the old file or the whole
new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import textwrap
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from . import faults, procs
from .private import user_file_mode

MAX_LINE = 42
MAX_LINES = 2
MAX_DURATION = 7.0
MIN_DURATION = 0.2


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str
    # (word, start, end) of each word where the cue was cut at word times: the karaoke
    # timing of the ass format; empty for a translation or a cue without word times
    words: tuple[tuple[str, float, float], ...] = ()


def make_cues(
    segments: Iterable[tuple[float, float, str]],
    *,
    max_line: int = MAX_LINE,
    max_lines: int = MAX_LINES,
    max_duration: float = MAX_DURATION,
) -> list[Cue]:
    """Split long segments at word boundaries, in proportion to characters, and fix overlaps."""
    max_chars = max_line * max_lines
    cues: list[Cue] = []
    for start, end, raw in segments:
        text = " ".join(raw.split())
        if not text:
            continue
        end = max(end, start + MIN_DURATION)
        pieces = _split_words(text, max_chars, max_line, max_lines)
        n_by_time = int(-(-(end - start) // max_duration))
        if len(pieces) < n_by_time:
            pieces = _split_even(text, n_by_time)
        total = sum(len(p) for p in pieces) or 1
        t = start
        for piece in pieces:
            span = (end - start) * len(piece) / total
            cues.append(Cue(t, min(t + span, end), piece))
            t += span
    return _no_overlaps(cues)


def _split_words(text: str, max_chars: int, max_line: int, max_lines: int) -> list[str]:
    words = text.split(" ")
    pieces: list[str] = []
    current: list[str] = []
    for word in words:
        trial = " ".join([*current, word])
        if current and (len(trial) > max_chars or len(wrap(trial, max_line)) > max_lines):
            pieces.append(" ".join(current))
            current = [word]
        else:
            current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _split_even(text: str, n: int) -> list[str]:
    words = text.split(" ")
    n = max(1, min(n, len(words)))
    size = -(-len(words) // n)
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def _no_overlaps(cues: list[Cue]) -> list[Cue]:
    cues = sorted(cues, key=lambda c: c.start)
    fixed: list[Cue] = []
    for cue in cues:
        start = cue.start
        if fixed and start < fixed[-1].end:
            start = fixed[-1].end
        end = max(cue.end, start + MIN_DURATION) if cue.end > start else start + MIN_DURATION
        fixed.append(Cue(round(start, 3), round(end, 3), cue.text))
    return fixed


def settle(cues: Iterable[Cue]) -> list[Cue]:
    """Cues in order with none overlapping the next, times in whole milliseconds. Where a
    cue starts inside the one before (a segment without words beside word-timed ones), the
    earlier ends where it starts if it keeps MIN_DURATION, else it starts where the
    earlier ends."""
    out: list[Cue] = []
    for cue in sorted(cues, key=lambda c: c.start):
        start, end = cue.start, cue.end
        if out and start < out[-1].end:
            if start - out[-1].start >= MIN_DURATION:
                out[-1] = replace(out[-1], end=start)
            else:
                start = out[-1].end
                end = max(end, start + MIN_DURATION)
        out.append(replace(cue, start=start, end=end))
    return [replace(c, start=round(c.start, 3), end=round(c.end, 3)) for c in out]


_BREAK_AFTER = (",", ".", "?", "!", ";", ":", "…")


def wrap(text: str, width: int = MAX_LINE) -> list[str]:
    """`text` as lines of at most `width` characters (a word longer than that alone on its
    line). Text that needs two lines is broken where they balance, after punctuation if
    one is near, the lower line the longer on a tie (as broadcast guides ask), instead of
    filling the first line and leaving a word or two below."""
    text = " ".join(text.split())
    lines = textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)
    if len(lines) != 2:
        return lines or [""]
    words = text.split(" ")
    best: tuple[float, list[str]] | None = None
    for k in range(1, len(words)):
        top, bottom = " ".join(words[:k]), " ".join(words[k:])
        if len(top) > width or len(bottom) > width:
            continue
        score = abs(len(top) - len(bottom)) + (0.5 if len(top) > len(bottom) else 0.0)
        if top.endswith(_BREAK_AFTER):
            score -= 8
        if best is None or score < best[0]:
            best = (score, [top, bottom])
    return best[1] if best else lines


def balanced_lines(text: str, width: int = MAX_LINE) -> str:
    """Wrap a cue's text into lines of at most `width` characters for display."""
    return "\n".join(wrap(text, width))


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cue_lines(text: str, width: int = MAX_LINE) -> list[str]:
    """A cue's text as the lines every format shows: wrapped at `width`, no blank line (a
    blank line would end the cue early in every player), no "-->" (it confuses parsers)."""
    lines = [line.strip() for line in balanced_lines(text, width).splitlines() if line.strip()]
    return [line.replace("-->", "->") for line in lines]


def _clean(text: str, width: int = MAX_LINE) -> str:
    return "\n".join(cue_lines(text, width))


def format_srt(cues: Sequence[Cue], width: int = MAX_LINE) -> str:
    blocks = [
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{_clean(c.text, width)}\n"
        for i, c in enumerate(cues, 1)
    ]
    return "\n".join(blocks)


def format_vtt(cues: Sequence[Cue], width: int = MAX_LINE) -> str:
    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    blocks = [
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{esc(_clean(c.text, width))}\n"
        for c in cues
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


TEMP_PREFIX = ".subq-"
_live_temps: set[str] = set()
_temps_lock = threading.Lock()


def write_atomic(path: Path, text: str) -> None:
    """Write UTF-8 (no BOM) via temp file + fsync + rename; on any error the old file stays."""
    path = Path(path)
    faults.maybe_fail("create", str(path))
    with _temps_lock:  # made and noted at once: another job's clean-up must not take it
        fd, tmp = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=".tmp", dir=path.parent
        )
        _live_temps.add(tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            faults.maybe_fail("write", str(path))
            os.fsync(f.fileno())
        os.chmod(tmp, user_file_mode())  # mkstemp made it 0600; the user's umask decides
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        _remove_quietly(tmp)
        raise
    finally:
        with _temps_lock:
            _live_temps.discard(tmp)


def remove_live_temps() -> None:
    """Called on SIGTERM/SIGHUP before a hard exit, where `finally` blocks will not run."""
    with _temps_lock:
        temps = list(_live_temps)
        _live_temps.clear()
    for tmp in temps:
        _remove_quietly(tmp)


def remove_stale_temps(folder: Path) -> int:
    """Remove temp files a killed process left in an output folder; returns how many."""
    count = 0
    try:
        for entry in folder.iterdir():
            name = entry.name
            if not (name.startswith(TEMP_PREFIX) and name.endswith(".tmp")):
                continue
            pid = name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
            if pid.isdigit() and procs.alive(int(pid)) and int(pid) != os.getpid():
                continue  # another live worker is writing it
            with _temps_lock:  # this process runs several jobs: one may be writing it
                if any(os.path.basename(t) == name for t in _live_temps):
                    continue
                _remove_quietly(str(entry))
            count += 1
    except OSError:
        pass
    return count


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
