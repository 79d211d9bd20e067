"""Every subtitle and transcript format subq writes, made from one `Document`.

`srt` and `vtt` (subtitles.py), `txt` (one cue a line), `tsv` (the whisper CLI's layout:
a `start end text` header, times in whole milliseconds), `json` (the transcript's segments
with their timed words, the cues, the language, the model and the options that made it,
the job's quality `flags` and the `quality` values they were judged on, and the junk
`removed` from the transcript with its `removed_summary`) and `ass` (a readable default
style; with karaoke each word is highlighted as it is spoken, `{\\k}` tags from the word
times). A translation is a Document too: its cues carry the translated text, its segments
are its cues, and it has no words (so no karaoke). Each format is read back by a parser
that is not subq's in the tests (srt, webvtt-py, pysubs2, json, csv).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .findings import Removal, cleanup_summary
from .options import WriteOptions
from .subtitles import Cue, cue_lines, format_srt, format_vtt


@dataclass(frozen=True)
class Document:
    """What one written file is made of; each format reads what it needs of it."""

    cues: tuple[Cue, ...]
    language: str | None = None
    segments: tuple[Any, ...] = ()  # the transcript's asr.Segments; () for a translation
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # what shaped it (json)
    translated_from: str | None = None  # the transcript's language, for a translation
    flags: tuple[str, ...] = ()  # the job's quality flags (json; quality.py)
    measures: dict[str, float] = field(default_factory=dict)  # what the flags were judged on
    removed: tuple[Removal, ...] = ()  # junk taken out of the transcript (junk.py)


def render(fmt: str, doc: Document, options: WriteOptions) -> str:
    """The text of `doc` in `fmt` (one of settings.FORMATS), laid out as `options` say."""
    return FORMATTERS[fmt](doc, options)


def _srt(doc: Document, options: WriteOptions) -> str:
    return format_srt(doc.cues, options.layout.max_line_width)


def _vtt(doc: Document, options: WriteOptions) -> str:
    return format_vtt(doc.cues, options.layout.max_line_width)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def format_txt(doc: Document, options: WriteOptions) -> str:
    """Plain text, one cue a line, as the whisper CLI writes one segment a line."""
    return "".join(f"{_one_line(c.text)}\n" for c in doc.cues if _one_line(c.text))


def format_tsv(doc: Document, options: WriteOptions) -> str:
    """The whisper CLI's TSV: integer milliseconds (no decimal comma in any locale)."""
    rows = ["start\tend\ttext"]
    rows += [
        f"{round(1000 * c.start)}\t{round(1000 * c.end)}\t{_one_line(c.text).replace(chr(9), ' ')}"
        for c in doc.cues
    ]
    return "\n".join(rows) + "\n"


def format_json(doc: Document, options: WriteOptions) -> str:
    """The transcript as data: segments with their words (the text as the model wrote it,
    leading space included, as the whisper CLI writes it), the cues as the SRT shows
    them, and what made them."""
    if doc.segments:
        segments = [_segment_json(n, s) for n, s in enumerate(doc.segments)]
    else:
        segments = [
            {"id": n, "start": c.start, "end": c.end, "text": c.text, "words": []}
            for n, c in enumerate(doc.cues)
        ]
    data: dict[str, Any] = {
        "language": doc.language,
        "model": doc.model,
        "options": doc.options,
        "flags": list(doc.flags),
        "quality": doc.measures,
        "removed": [r._asdict() for r in doc.removed],
        "removed_summary": cleanup_summary(doc.removed),
        "text": " ".join(_one_line(c.text) for c in doc.cues),
        "segments": segments,
        "cues": [{"start": c.start, "end": c.end, "text": c.text} for c in doc.cues],
    }
    if doc.translated_from:
        data["translated_from"] = doc.translated_from
    return json.dumps(data, ensure_ascii=False) + "\n"


def _segment_json(n: int, s: Any) -> dict[str, Any]:
    return {
        "id": n,
        "start": s.start,
        "end": s.end,
        "text": s.text,
        "no_speech_prob": s.no_speech_prob,
        "avg_logprob": s.avg_logprob,
        "words": [
            {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
            for w in s.words
        ],
    }


# -- ass -------------------------------------------------------------------------------------

# 1080p canvas; white text on a thin black outline and soft shadow, bottom centre. Karaoke:
# a word turns from white (to come) to yellow (spoken) at its start. Colours are &HAABBGGRR.
_STYLE_FORMAT = (
    "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
    "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding"
)
_STYLES = (
    "Style: Default,Arial,64,&H00FFFFFF,&H00FFFFFF,&H00000000,&H80000000,"
    "0,0,0,0,100,100,0,0,1,3,1,2,120,120,60,1",
    "Style: Karaoke,Arial,64,&H0000FFFF,&H00FFFFFF,&H00000000,&H80000000,"
    "0,0,0,0,100,100,0,0,1,3,1,2,120,120,60,1",
)


def format_ass(doc: Document, options: WriteOptions) -> str:
    """Advanced SubStation Alpha: one Dialogue a cue; with `options.karaoke`, cues cut at
    word times get a `{\\k}` tag per word (centiseconds until the next word starts)."""
    head = [
        "[Script Info]",
        "; written by subq",
        "ScriptType: v4.00+",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "PlayResX: 1920",
        "PlayResY: 1080",
        "",
        "[V4+ Styles]",
        _STYLE_FORMAT,
        *_STYLES,
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    width = options.layout.max_line_width
    events = []
    for cue in doc.cues:
        karaoke = _karaoke(cue, width) if options.karaoke else None
        style = "Karaoke" if karaoke is not None else "Default"
        text = (
            karaoke
            if karaoke is not None
            else "\\N".join(map(_ass_escape, cue_lines(cue.text, width)))
        )
        events.append(
            f"Dialogue: 0,{_ass_time(cue.start)},{_ass_time(cue.end)},{style},,0,0,0,,{text}"
        )
    return "\n".join([*head, *events]) + "\n"


def _ass_time(seconds: float) -> str:
    cs = max(0, round(seconds * 100))
    h, rest = divmod(cs, 360_000)
    m, rest = divmod(rest, 6000)
    s, cs = divmod(rest, 100)
    return f"{h}:{m:02d}:{s:02d}.{cs:02d}"


def _ass_escape(text: str) -> str:
    """Braces open override tags and a backslash starts a command in ASS; neither has an
    escape, so they become their nearest look-alikes."""
    return text.replace("\\", "⧵").replace("{", "(").replace("}", ")")


def _karaoke(cue: Cue, width: int) -> str | None:
    """The cue's lines with a `{\\kN}` before each word, or None where the cue has no
    word times matching its text (a translation, or segments without words)."""
    words = cue.words
    if not words or " ".join(w[0] for w in words) != _one_line(cue.text):
        return None
    lines = cue_lines(cue.text, width)
    breaks: set[int] = set()  # word indices that start a line after the first
    count = 0
    for line in lines[:-1]:
        count += len(line.split(" "))
        breaks.add(count)
    marks = [round((w[1] - cue.start) * 100) for w in words]
    last = max(marks[-1] + 1, round((words[-1][2] - cue.start) * 100))
    parts = []
    token = 0
    for n, (word, _start, _end) in enumerate(words):
        length = (marks[n + 1] if n + 1 < len(words) else last) - marks[n]
        sep = "" if n == 0 else ("\\N" if token in breaks else " ")
        parts.append(f"{sep}{{\\k{max(length, 0)}}}{_ass_escape(word)}")
        token += len(word.split(" "))
    return "".join(parts)


Formatter = Callable[[Document, WriteOptions], str]
FORMATTERS: dict[str, Formatter] = {
    "srt": _srt,
    "vtt": _vtt,
    "txt": format_txt,
    "tsv": format_tsv,
    "json": format_json,
    "ass": format_ass,
}
