"""Junk in a transcript, taken out before the cues are built, and every removal listed.

Two kinds, both well known from whisper's issue trackers:

- **Loops.** The decoder repeats itself: a sentence, or a few in turn, over and over,
  within a segment or across many. A block of words repeated back to back collapses to its
  first copy (an unfinished copy at the end of the run, 4 words or more, goes too). Two
  copies make a loop where the block has at least 4 words (people say "no, no" but rarely
  a whole clause twice); shorter blocks need three copies and 8 words in all ("I'm sorry"
  three times). Words are compared as words (case and punctuation aside), never by likeness,
  so nothing merely similar is lost; copies are cut at word edges, or at segment edges where
  word timestamps are off.
- **Invented lines.** On silence, noise or music whisper writes what its training videos
  said there: "Thanks for watching!", "Subtitles by the Amara.org community", "Untertitel im
  Auftrag des ZDF", a lone "you". A segment whose whole text is such a phrase (INVENTED_PHRASE:
  English, French, Spanish, German and the Amara.org credits in any language) is removed
  only where the audio has no speech under it: the Silero VAD finds speech in under
  SPEECH_SHARE of the segment's time (read in the prober's reader child, speech_check.py).
  Where the VAD cannot run, the model's own no-speech probability decides instead (at or
  over the job's no-speech threshold). A spoken "Thank you." is never touched.

The phrases are the ones users collected in openai/whisper discussion 928 (and lists kept
from it, such as ScrAIbe's hallucinations.py), narrowed to whole-line matches. It is all
deterministic for one transcript and one file, so a resumed job writes what a clean run
writes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from . import quality
from .asr.base import Segment, Word
from .findings import INVENTED, REPEAT, Removal

# of a segment's time: invented "you"s measured 0.0, a melody 0.01, spoken lines 0.79-1.0
SPEECH_SHARE = 0.2
MAX_PERIOD = 80  # words in a looping block: a window's worth of text at most
# (start, end) of each segment asked about -> the share of each that holds speech; None
# when the VAD cannot tell (no onnxruntime or model, an unreadable file)
SpeechCheck = Callable[[list[tuple[float, float]]], list[float] | None]

_PHRASES = (
    # English
    r"you",
    r"(thank you|thanks)( (so|very) much)?( (for|4) (watching|listening|viewing))?"
    r"( (and )?(bye|goodbye|see you( next time| soon)?))?",
    r"(please )?(like (and|&) )?subscribe( to (my|our|the) channel)?",
    r"(i ll |we ll )?see you (next time|soon|in the next (video|one|episode))",
    r"(bye|goodbye)( bye)?",
    r"(subtitles|captions|captioning|transcription|transcript|subtitled|captioned)"
    r"( \w+){0,3} by .+",
    r"(music|applause|laughter|silence)",
    # French
    r"merci( beaucoup)?( (d avoir|pour avoir) regardé( cette vidéo)?)?( et à bientôt)?",
    r"(sous titres?|sous titrage)( \w+){0,3} (par|para|pour|de) .+",
    r"sous titrage .+",
    r"abonnez vous( à (la|ma|notre) chaîne)?",
    r"à (bientôt|la prochaine)",
    # Spanish
    r"(muchas )?gracias( por (ver|mirar|vernos|su atención)( el (video|vídeo))?)?",
    r"(subtítulos|subtitulado|subtitulación)( \w+){0,3} (por|de) .+",
    r"suscríbete( (al|a mi) canal)?",
    r"nos vemos( en el próximo (video|vídeo))?",
    # German
    r"(vielen )?dank( schön)?( fürs (zuschauen|zusehen|zuhören))?",
    r"danke( schön)?( fürs (zuschauen|zusehen|zuhören))?",
    r"untertitel(ung)? .+",
    r"bis zum nächsten mal",
    r"abonniert( (den|meinen) kanal)?",
    r"(copyright )?(wdr|swr|zdf|ard)( \d{4})?",
    # the Amara.org credit, in any language
    r".*\bamara org\b.*",
)
INVENTED_PHRASE = re.compile("|".join(f"(?:{p})" for p in _PHRASES))


@dataclass(frozen=True)
class Cleaned:
    """A transcript's segments after the clean-up, and what it took out, in time order."""

    segments: tuple[Segment, ...]
    removed: tuple[Removal, ...]


def words(text: str) -> str:
    """`text` as the clean-up compares it: lower case, letters and digits, one space apart."""
    text = unicodedata.normalize("NFC", text).casefold()
    return " ".join(re.sub(r"[^\w]+|_", " ", text).split())


def is_invented_phrase(text: str) -> bool:
    """Is the whole of `text` one of the phrases whisper invents on silence?"""
    said = words(text)
    return bool(said) and INVENTED_PHRASE.fullmatch(said) is not None


def clean(
    segments: Sequence[Segment], speech: SpeechCheck, no_speech_threshold: float = 0.6
) -> Cleaned:
    """Collapse loops, then remove invented lines where nobody speaks (module docstring)."""
    kept, repeats = collapse_repeats(segments)
    kept, invented = remove_invented(kept, speech, no_speech_threshold)
    removed = sorted((*repeats, *invented), key=lambda r: (r.start, r.kind))
    return Cleaned(tuple(kept), tuple(removed))


class _Unit(NamedTuple):
    """What a loop is cut at: one word of segment `seg` (`word` its index), or where
    segments have no words, a whole segment (`word` -1)."""

    seg: int
    word: int
    start: float
    end: float
    text: str


def collapse_repeats(segments: Sequence[Segment]) -> tuple[list[Segment], list[Removal]]:
    """Each loop as its first copy, and what went: compared word by word where every
    segment has its words (a loop rarely keeps to segment edges), else segment by segment."""
    spoken = [s for s in segments if words(s.text)]
    by_word = bool(spoken) and all(s.words for s in spoken)
    units = [
        _Unit(n, k, w.start, w.end, w.word)
        for n, seg in enumerate(segments)
        for k, w in (enumerate(seg.words) if by_word else [(-1, _whole(seg))])
    ]
    tokens: list[str] = []
    edges: dict[int, int] = {}  # token index -> the unit starting there (and the end)
    for u, unit in enumerate(units):
        edges.setdefault(len(tokens), u)
        tokens += words(unit.text).split()
    edges[len(tokens)] = len(units)
    gone: set[int] = set()
    removed: list[Removal] = []
    at = 0
    while at < len(tokens):
        run = _run_at(tokens, at, edges)
        if run is None:
            at += 1
            continue
        period, copies, stop = run
        block, copy = units[edges[at] : edges[at + period]], units[edges[at + period] : edges[stop]]
        joiner = "" if by_word else " "
        text = joiner.join(x.text if by_word else x.text.strip() for x in block).strip()
        removed.append(Removal(REPEAT, _ms(copy[0].start), _ms(copy[-1].end), text, copies - 1))
        gone.update(range(edges[at + period], edges[stop]))
        at = stop
    return _rebuilt(segments, units, gone), removed


def _run_at(tokens: list[str], at: int, edges: dict[int, int]) -> tuple[int, int, int] | None:
    """(period in words, copies, the word after the run) of the shortest loop starting at
    word `at` whose copies start and end at unit edges, or None. A copy cut short at the
    end of a run (a loop stops mid-copy) goes with it where it is at least 4 words long."""
    if at not in edges:
        return None
    for period in range(1, min(MAX_PERIOD, (len(tokens) - at) // 2) + 1):
        if tokens[at + period] != tokens[at] or at + period not in edges:
            continue
        block = tokens[at : at + period]
        copies, stop = 1, at + period
        while tokens[stop : stop + period] == block and stop + period in edges:
            copies, stop = copies + 1, stop + period
        if not ((period >= 4 and copies >= 2) or (copies >= 3 and period * copies >= 8)):
            continue
        for part in range(period - 1, 3, -1):  # the longest unfinished copy after it
            if tokens[stop : stop + part] == block[:part] and stop + part in edges:
                return period, copies + 1, stop + part
        return period, copies, stop
    return None


def _whole(seg: Segment) -> Word:
    """A segment as one unit of a loop where there are no word times."""
    return Word(seg.text, seg.start, seg.end, 1.0)


def _rebuilt(segments: Sequence[Segment], units: list[_Unit], gone: set[int]) -> list[Segment]:
    """The segments without the units in `gone`: a segment that lost some of its words
    keeps the others (and takes its text and times from them); one left without a word
    goes."""
    lost: dict[int, set[int]] = {}
    for u in gone:
        lost.setdefault(units[u].seg, set()).add(units[u].word)
    out = []
    for n, seg in enumerate(segments):
        if n not in lost:
            out.append(seg)
            continue
        left = tuple(w for k, w in enumerate(seg.words) if k not in lost[n])
        if any(words(w.word) for w in left):
            text = "".join(w.word for w in left).strip()
            out.append(replace(seg, start=left[0].start, end=left[-1].end, text=text, words=left))
    return out


def remove_invented(
    segments: Sequence[Segment], speech: SpeechCheck, no_speech_threshold: float = 0.6
) -> tuple[list[Segment], list[Removal]]:
    """Segments that are wholly an invented phrase, removed where no speech is under them."""
    suspects = [n for n, s in enumerate(segments) if is_invented_phrase(s.text)]
    if not suspects:
        return list(segments), []
    shares = speech([(segments[n].start, segments[n].end) for n in suspects])
    silent = [
        n
        for k, n in enumerate(suspects)
        if (
            segments[n].no_speech_prob >= no_speech_threshold
            if shares is None
            else shares[k] < SPEECH_SHARE
        )
    ]
    removed = [
        Removal(INVENTED, _ms(s.start), _ms(s.end), s.text.strip())
        for s in map(segments.__getitem__, silent)
    ]
    return [s for n, s in enumerate(segments) if n not in silent], removed


# A job's findings fields when nothing was examined (a file skipped as subtitled already).
NOTHING_FOUND: dict[str, Any] = {"flags": (), "measures": (), "removed": ()}


@dataclass(frozen=True)
class Findings:
    """A transcript cleaned of junk (as it was with keep_junk), what was removed, and the
    quality measures and flags of what the model wrote before any clean-up."""

    segments: tuple[Segment, ...]
    removed: tuple[Removal, ...]
    measures: dict[str, float]
    flags: tuple[str, ...]

    @property
    def shown(self) -> dict[str, Any]:
        """As a `formats.Document` shows them (the json output)."""
        return {"flags": self.flags, "measures": self.measures, "removed": self.removed}

    @property
    def changes(self) -> dict[str, Any]:
        """As the `Job` holds them (the state file, events, the app)."""
        return {**self.shown, "measures": tuple(self.measures.items())}


def examine(
    segments: Sequence[Segment],
    duration: float | None,
    language_probability: float | None,
    speech: SpeechCheck,
    keep: bool = False,
    no_speech_threshold: float = 0.6,
) -> Findings:
    """Measure and flag the transcript as the model wrote it, then clean it unless `keep`;
    `language_probability` only where the language was detected."""
    measures = quality.measure(segments, duration, language_probability)
    cleaned = Cleaned(tuple(segments), ()) if keep else clean(segments, speech, no_speech_threshold)
    return Findings(cleaned.segments, cleaned.removed, measures, quality.flags(measures))


def _ms(seconds: float) -> float:
    return round(float(seconds), 3)
