"""Subtitle cues cut at the words the model timed (issue 27).

Cutting a long segment in proportion to its characters put cue edges mid-word in time and
left one-word scraps ("tower.", "and") on screen for a fraction of a second. Where the
segments carry their words (word timestamps on, the default), a cue starts at its first
word's start and ends at its last word's end plus a tail, never into the next cue. Cues
break at sentence ends, then where the speaker pauses or a clause ends, then where the
layout demands (line width, lines, seconds): each sentence is cut by a small dynamic
programme over its word gaps that prefers balanced pieces, pauses and clause ends, and
pays dearly for a one-word scrap. A scrap that remains joins its neighbour in the same
sentence wherever the layout allows.

The tail follows Netflix's timing guide: a cue may stay up to half a second (12 frames)
past the end of speech where the reading speed (`max_cps`) or the minimum duration (5/6 s)
needs it, and 0.2 s otherwise. Segments without words keep the proportional rule
(subtitles.make_cues).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .options import Layout
from .subtitles import Cue, make_cues, settle, wrap

SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
CLAUSE_END = (",", ";", ":", "—", "–", "、", "，", "；")
CLOSERS = "\"'”’)]}»"
ABBREVIATIONS = frozenset(("mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "prof.", "jr.", "sr."))
INITIALS = re.compile(r"^(?:[A-Za-z]\.){2,}$")  # U.S., e.g., i.e.
JOINERS = frozenset(
    {"and", "but", "or", "so", "because", "which", "that", "who", "when", "where", "while"}
    | {"if", "than", "then", "until"}
)
TAIL = 0.2  # seconds a cue stays after its last word, room permitting
MAX_TAIL = 0.5  # Netflix: the out-time may run 12 frames past the audio for reading speed
MIN_SECONDS = 5 / 6  # Netflix's shortest subtitle: the tail grows toward it
SCRAP_SECONDS = 0.8  # a one-word cue shorter than this, split off a sentence, is a scrap

# The dynamic programme's weights (per piece and per cut; a full piece costs 1).
PAUSE_WEIGHT = 1.2  # per second of pause at a cut, up to one second
CLAUSE_BONUS = 0.25
JOINER_BONUS = 0.15
SCRAP_COST = 2.0
SHORT_COST = 0.3
CPS_WEIGHT = 0.5


class TimedSegment(Protocol):
    """What the builder reads of an `asr.Segment`."""

    start: float
    end: float
    text: str
    words: Sequence[Any]  # asr.Word: (word, start, end, probability)


@dataclass(frozen=True)
class _Word:
    text: str  # stripped
    start: float
    end: float
    sentence: int  # which sentence of its run


DEFAULT_LAYOUT = Layout()


def build_cues(segments: Iterable[TimedSegment], layout: Layout = DEFAULT_LAYOUT) -> list[Cue]:
    """The transcript's cues: cut at the words where the segments have them, in proportion
    to characters where they do not; never overlapping, times in whole milliseconds."""
    cues: list[Cue] = []
    run: list[TimedSegment] = []
    for segment in segments:
        if segment.words:
            run.append(segment)
            continue
        cues += _word_cues(run, layout)
        run = []
        cues += make_cues(
            [(segment.start, segment.end, segment.text)],
            max_line=layout.max_line_width,
            max_lines=layout.max_lines,
            max_duration=layout.max_cue_seconds,
        )
    cues += _word_cues(run, layout)
    return settle(cues)


def _word_cues(segments: list[TimedSegment], layout: Layout) -> list[Cue]:
    words = _words(segments)
    if not words:
        return []
    pieces: list[tuple[int, int]] = []
    first = 0
    for i, word in enumerate(words):
        if i + 1 == len(words) or words[i + 1].sentence != word.sentence:
            pieces += _cut(words, first, i + 1, layout)
            first = i + 1
    pieces = _join_scraps(words, pieces, layout)
    distinct: list[tuple[int, int]] = []
    for i, j in pieces:  # a piece the aligner started where the last one starts joins it
        if distinct and words[i].start <= words[distinct[-1][0]].start:
            i = distinct.pop()[0]
        distinct.append((i, j))
    cues = []
    for n, (i, j) in enumerate(distinct):
        following = words[distinct[n + 1][0]].start if n + 1 < len(distinct) else None
        start, end = words[i].start, _end(words, i, j, following, layout)
        cues.append(Cue(start, end, _text(words, i, j), _timed(words, i, j)))
    return cues


def _words(segments: list[TimedSegment]) -> list[_Word]:
    """The run's words in order, stripped, each numbered with its sentence."""
    out: list[_Word] = []
    sentence = 0
    for segment in segments:
        for w in segment.words:
            text = " ".join(str(w[0]).split())
            if not text:
                continue
            start, end = float(w[1]), float(w[2])
            if out:
                start = max(start, out[-1].start)  # never before the word it follows
            out.append(_Word(text, start, max(end, start), sentence))
            if ends_sentence(text):
                sentence += 1
    return out


def ends_sentence(word: str) -> bool:
    """Whether a word ends its sentence: it ends in a full stop, question or exclamation
    mark (quotes and brackets after it aside), and is no abbreviation (Mr., U.S.)."""
    core = word.rstrip(CLOSERS)
    if not core.endswith(SENTENCE_END):
        return False
    return core.lower() not in ABBREVIATIONS and not INITIALS.match(core)


def _text(words: Sequence[_Word], i: int, j: int) -> str:
    return " ".join(w.text for w in words[i:j])


def _timed(words: Sequence[_Word], i: int, j: int) -> tuple[tuple[str, float, float], ...]:
    return tuple((w.text, w.start, w.end) for w in words[i:j])


def _fits(words: Sequence[_Word], i: int, j: int, layout: Layout) -> bool:
    """Whether words [i, j) make one cue within the layout (a single word always does)."""
    if j - i == 1:
        return True
    if words[j - 1].end - words[i].start > layout.max_cue_seconds:
        return False
    text = _text(words, i, j)
    if len(text) > layout.max_line_width * layout.max_lines:
        return False
    return len(wrap(text, layout.max_line_width)) <= layout.max_lines


def _end(words: Sequence[_Word], i: int, j: int, following: float | None, layout: Layout) -> float:
    """Where a cue of words [i, j) ends: its last word's end plus the tail (longer where
    reading speed or the minimum duration needs it), never into the cue after it and never
    beyond the longest cue (unless its words alone last longer)."""
    start, last = words[i].start, words[j - 1].end
    spoken = last - start
    need = max(len(_text(words, i, j)) / layout.max_cps - spoken, MIN_SECONDS - spoken)
    end = last + min(max(TAIL, need), MAX_TAIL)
    end = min(end, max(start + layout.max_cue_seconds, last))
    if following is not None:
        end = min(end, following)
    return end


def _piece_cost(
    words: Sequence[_Word], i: int, j: int, layout: Layout, sentence_words: int
) -> float:
    """Balanced, readable pieces cost little; scraps and over-fast text cost more."""
    following = words[j].start if j < len(words) else None
    start, end = words[i].start, _end(words, i, j, following, layout)
    chars = len(_text(words, i, j))
    fill = max(
        chars / (layout.max_line_width * layout.max_lines),
        (words[j - 1].end - start) / layout.max_cue_seconds,
    )
    cost = fill * fill
    shown = max(end - start, 0.01)
    if chars / shown > layout.max_cps:
        cost += CPS_WEIGHT * (chars / shown / layout.max_cps - 1)
    if j - i == 1 and sentence_words > 1 and shown < SCRAP_SECONDS:
        cost += SCRAP_COST
    elif shown < MIN_SECONDS:
        cost += SHORT_COST
    return cost


def _cut_cost(words: Sequence[_Word], k: int) -> float:
    """The cost of a cue break before word k: 1, less for a pause, a clause end, or a
    conjunction that starts the next piece (a long pause makes it a gain)."""
    gap = words[k].start - words[k - 1].end
    bonus = PAUSE_WEIGHT * min(max(gap, 0.0), 1.0)
    if words[k - 1].text.rstrip(CLOSERS).endswith(CLAUSE_END):
        bonus += CLAUSE_BONUS
    if words[k].text.lower().strip(",.") in JOINERS:
        bonus += JOINER_BONUS
    return 1.0 - bonus


def _cut(words: Sequence[_Word], first: int, stop: int, layout: Layout) -> list[tuple[int, int]]:
    """One sentence, words [first, stop), as the cheapest pieces that fit the layout."""
    n = stop - first
    best = [0.0] + [float("inf")] * n
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            if i < j - 1 and not _fits(words, first + i, first + j, layout):
                break
            cost = best[i] + _piece_cost(words, first + i, first + j, layout, n)
            if i > 0:
                cost += _cut_cost(words, first + i)
            if cost < best[j]:
                best[j], back[j] = cost, i
    pieces = []
    j = n
    while j > 0:
        pieces.append((first + back[j], first + j))
        j = back[j]
    return pieces[::-1]


def _join_scraps(
    words: Sequence[_Word], pieces: list[tuple[int, int]], layout: Layout
) -> list[tuple[int, int]]:
    """A one-word piece shown under SCRAP_SECONDS joins the piece beside it in its
    sentence (the nearer in time first) where the joined piece fits the layout."""
    out = list(pieces)
    n = 0
    while n < len(out):
        i, j = out[n]
        following = words[out[n + 1][0]].start if n + 1 < len(out) else None
        if j - i > 1 or _end(words, i, j, following, layout) - words[i].start >= SCRAP_SECONDS:
            n += 1
            continue
        sides = []
        if n > 0 and words[out[n - 1][0]].sentence == words[i].sentence:
            sides.append((words[i].start - words[i - 1].end, n - 1))
        if n + 1 < len(out) and words[out[n + 1][0]].sentence == words[i].sentence:
            sides.append((words[j].start - words[j - 1].end, n + 1))
        for _gap, m in sorted(sides):
            a, b = min(out[m][0], i), max(out[m][1], j)
            if _fits(words, a, b, layout):
                out[min(m, n) : max(m, n) + 1] = [(a, b)]
                n = min(m, n)
                break
        else:
            n += 1
    return out
