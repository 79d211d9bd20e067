"""What a finished job's run found, as plain values: its quality flags and the junk taken out
of its subtitles, and the words every front end shows them in.

These ride on the `Job` (the state file, events, the socket to the app), so they are plain
strings and tuples that need no import beyond this file: the app and `subq run` read them
without loading the model code that judged them (quality.py and junk.py do the judging).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

# The flags, most telling first, and the short word the job table and `subq run`'s summary
# show for each (at most 6 characters, so "loops+1" fits the table's flags column).
FLAG_LABELS = {
    "no_speech": "silent",  # the model found speech in under a tenth of the file
    "repetitive": "loops",  # a window's text compresses like a loop (whisper's own test)
    "low_logprob": "unsure",  # the model's average log-probability is low: many misheard
    "unsure_language": "lang?",  # the detected language was a guess
}
FLAG_MEANINGS = {
    "no_speech": "little or no speech found",
    "repetitive": "text repeats like a loop",
    "low_logprob": "the model doubted its words",
    "unsure_language": "the language is a guess",
}
FLAG_MEASURES = {  # the value each flag is judged on (quality.py), as people read it
    "no_speech": ("no_speech", "no speech in {:.0%} of the file"),
    "repetitive": ("compression_ratio", "compression ratio {:.2f}"),
    "low_logprob": ("avg_logprob", "avg log-prob {:.2f}"),
    "unsure_language": ("language_probability", "{:.0%} sure of the language"),
}
REPEAT = "repeat"
INVENTED = "invented"


class Removal(NamedTuple):
    """One thing taken out of the subtitles: `count` repeated segments collapsed into the one
    kept before them (`kind` "repeat"), or one line whisper invented where nobody speaks
    ("invented"); `start`-`end` is what was taken out, `text` what it said."""

    kind: str
    start: float
    end: float
    text: str
    count: int = 1


def flag_words(flags: Sequence[str]) -> str:
    """The flags as the table's column shows them: the first one's word, "+N" for more."""
    if not flags:
        return ""
    first = FLAG_LABELS.get(flags[0], flags[0])
    return first if len(flags) == 1 else f"{first}+{len(flags) - 1}"


def flag_list(flags: Sequence[str]) -> str:
    """Every flag's word: "loops, unsure" (`subq run`'s summary, the details screen)."""
    return ", ".join(FLAG_LABELS.get(f, f) for f in flags)


def flag_notes(flags: Sequence[str], measures: Iterable[Sequence[object]] = ()) -> list[str]:
    """Each flag in words, with the value it was judged on where known: "loops: text
    repeats like a loop (compression ratio 3.24)"."""
    values = {str(k): v for k, v in measures}
    notes = []
    for flag in flags:
        note = f"{FLAG_LABELS.get(flag, flag)}: {FLAG_MEANINGS.get(flag, flag)}"
        name, shown = FLAG_MEASURES.get(flag, ("", ""))
        if isinstance(values.get(name), int | float):
            note += f" ({shown.format(values[name])})"
        notes.append(note)
    return notes


def removals(rows: Iterable[Sequence[object]]) -> list[Removal]:
    """Stored or received rows (lists or plain tuples) as `Removal`s."""
    return [Removal._make(row) for row in rows]


def cleanup_summary(rows: Iterable[Sequence[object]]) -> str:
    """One line: "2 repeated cues collapsed at 0:08, 1 invented line removed at 12:31"
    (empty when nothing was removed)."""
    found = removals(rows)
    parts = []
    for kind, what in ((REPEAT, "repeated cue{} collapsed"), (INVENTED, "invented line{} removed")):
        mine = [r for r in found if r.kind == kind]
        count = sum(r.count for r in mine)
        if count:
            times = [clock(r.start) for r in mine]
            at = ", ".join(times[:3]) + (", …" if len(times) > 3 else "")
            parts.append(f"{count} {what.format('' if count == 1 else 's')} at {at}")
    return ", ".join(parts)


def removal_line(row: Sequence[object]) -> str:
    """One removal in words, for the job's details: "0:02-0:10 3 more of “It all…”"."""
    r = Removal._make(row)
    text = r.text if len(r.text) <= 40 else r.text[:39] + "…"
    if r.kind == REPEAT:
        return f"{clock(r.start)}-{clock(r.end)} {r.count} more of “{text}”"
    return f"{clock(r.start)} “{text}” (no speech there)"


def clock(seconds: float) -> str:
    """1:52, 1:02:03: a position in a file as a player shows it."""
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
