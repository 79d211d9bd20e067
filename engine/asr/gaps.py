"""Speech the decoder skipped, found with the VAD and decoded again without the prompt.

Why: Whisper's greedy decoding, prompted with the previous window's text, sometimes jumps
over a stretch of speech: the window's first timestamp lands seconds after speech began,
and what was said before it never reaches a segment. Both libraries do this too (subq's
loops equal theirs, see loudness.py); on a 14-minute recording tiny.en skipped 6.7 s of
continuous speech after one window that fell back to sampling. The libraries retry a bad
window at a higher temperature; a skip is not bad by their measures, so nothing retries it.

Here, once every window is done: each stretch longer than `MIN_GAP_SECONDS` with no
segment (between two segments, or at either end of the file) is given to the Silero VAD;
where a segment has word times, its words say what it covers, not its timestamps (tiny.en
also ends a segment seconds after its last word, over speech it never wrote down: with the
cues cut at the words, that speech had no cue and no refill);
where it hears more than `MIN_SPEECH_SECONDS` of speech, those frames are decoded again
on their own, without the prompt, and what that gives fills the stretch. It is a pure
function of the finished segments and the audio, so a resumed file is refilled exactly
as a clean run is. Off (`fill_gaps = false`), the transcript is the library's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .base import FRAMES_PER_SECOND, N_FFT, SAMPLE_RATE, Audio, Refill, Segment
from .vad import VadOptions, VadUnavailable, speech_regions

MIN_GAP_SECONDS = 3.0  # a pause between paragraphs is shorter; a skipped sentence longer
MIN_SPEECH_SECONDS = 1.5  # speech the VAD must hear in the stretch: a few words at least
EDGE_SECONDS = 0.2  # decoded around the speech the VAD found, so no word is cut

Redecode = Callable[[Audio, int, int], list[Segment]]  # (reader, start frame, end frame)


def fill(
    segments: list[Segment], audio: Audio, redecode: Redecode
) -> tuple[list[Segment], tuple[Refill, ...]]:
    """`segments` with every skipped stretch of speech decoded again, and what was filled."""
    heard = [
        (w.start, w.end) if s.words else (s.start, s.end)
        for s in segments
        if s.text
        for w in (s.words or (None,))
    ]
    edges = [0.0, *(t for span in heard for t in span), audio.duration]
    gaps = [
        (edges[i], edges[i + 1])
        for i in range(0, len(edges) - 1, 2)
        if edges[i + 1] - edges[i] > MIN_GAP_SECONDS
    ]
    if not gaps:
        return segments, ()
    reader = audio.reopen()
    added: list[Segment] = []
    refills: list[Refill] = []
    cuts: list[tuple[float, float]] = []  # refilled stretches
    try:
        for start, end in gaps:
            speech = _speech_within(reader, start, end)
            if speech is None:
                continue
            a, b = speech
            frames = round(a * FRAMES_PER_SECOND), round(b * FRAMES_PER_SECOND)
            found = [
                _clipped(s, start, end)
                for s in redecode(reader, *frames)
                if s.text and s.end > start and s.start < end
            ]
            added.extend(found)
            refills.append(Refill(a, b, len(found)))
            if found:
                cuts.append((start, end))
    except VadUnavailable:  # no Silero model or onnxruntime: the library's transcript
        return segments, ()
    finally:
        if reader is not audio and hasattr(reader, "close"):
            reader.close()
    if not added:
        return segments, tuple(refills)
    kept = [piece for s in segments for piece in _split(s, cuts)]
    return sorted([*kept, *added], key=lambda s: (s.start, s.end)), tuple(refills)


def _split(segment: Segment, cuts: list[tuple[float, float]]) -> list[Segment]:
    """`segment` in pieces at each refilled stretch inside it (between two of its words),
    so the refill's words come between them in time and in the text, not after the words
    the segment said beyond the stretch."""
    pieces, words = [], list(segment.words)
    for start, end in cuts:
        before = [w for w in words if w.end <= start]
        after = [w for w in words if w.start >= end]
        if not before or not after or len(before) + len(after) != len(words):
            continue
        pieces.append(_of_words(segment, before))
        words = after
    if not pieces:
        return [segment]
    return [*pieces, _of_words(segment, words)]


def _of_words(segment: Segment, words: list) -> Segment:
    """A piece of `segment` holding `words`; at least one frame long (a lone word the
    aligner timed with no length would read as an empty segment and be dropped)."""
    start = words[0].start
    end = max(words[-1].end, start + 1 / FRAMES_PER_SECOND)
    text = "".join(w.word for w in words)
    return replace(segment, start=start, end=end, text=text, words=tuple(words))


def _speech_within(reader: Audio, start: float, end: float) -> tuple[float, float] | None:
    """The first to the last speech the VAD hears between `start` and `end` (seconds, with
    `EDGE_SECONDS` around it), or None where it hears less than `MIN_SPEECH_SECONDS`."""
    first = int(start * SAMPLE_RATE)
    # read from half an STFT window earlier: the redecode's first window reads from there
    # and a reader only moves forward
    margin = min(first, N_FFT // 2)
    samples = reader.read(first - margin, int(end * SAMPLE_RATE) - first + margin)[margin:]
    regions = speech_regions(samples, VadOptions(speech_pad_ms=0))
    heard = sum(b - a for a, b in regions) / SAMPLE_RATE
    if heard < MIN_SPEECH_SECONDS:
        return None
    a = max(start, start + regions[0][0] / SAMPLE_RATE - EDGE_SECONDS)
    b = min(end, start + regions[-1][1] / SAMPLE_RATE + EDGE_SECONDS)
    return a, b


def _clipped(segment: Segment, start: float, end: float) -> Segment:
    """A refilled segment kept inside its stretch, so it never overlaps its neighbours;
    its words are clamped into it too (a word timed outside the stretch keeps its text: the
    aligner's time was wrong, not the word), so the cues cut at them stay inside it."""
    words = tuple(
        w._replace(start=min(max(w.start, start), end), end=max(min(w.end, end), start))
        for w in segment.words
    )
    return replace(segment, start=max(segment.start, start), end=min(segment.end, end), words=words)
