"""Cut a chunk's timed words into segments: one rule for both batched modes.

Both batched modes decode each VAD chunk as text only and get one block of words with
times; a 30 s block is too long a segment to store, show progress by, or translate. The
rule is written over plain (word, start, end, probability) tuples, so faster-whisper's word
objects (batched.py) and openai-whisper's word dicts (whisper_batched.py) both use it. Each
segment keeps its words (file times), from which the subtitle cues are cut
(cue_builder.py), as in the sequential loops.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Segment, Word

SENTENCE_END = (".", "?", "!", "…")
MAX_PIECE_SECONDS = 7.0
PAUSE_SECONDS = 1.0

TimedWord = tuple[str, float, float, float]  # word with its leading space, start, end, prob.


def pieces(
    words: Sequence[TimedWord],
    offset: float,
    *,
    no_speech_prob: float = 0.0,
    avg_logprob: float = 0.0,
) -> list[Segment]:
    """One chunk's words as segments, times shifted by `offset` (the chunk's start).

    A piece ends at a sentence end, before a pause of a second or more, or once it has run
    MAX_PIECE_SECONDS. The chunk's no-speech and log-probability scores go on every piece.
    """
    meta = dict(no_speech_prob=float(no_speech_prob), avg_logprob=float(avg_logprob))
    out: list[Segment] = []
    current: list[TimedWord] = []

    def flush() -> None:
        text = "".join(w[0] for w in current).strip()
        if text:
            start, end = offset + current[0][1], offset + current[-1][2]
            timed = tuple(
                Word(w, offset + float(a), offset + float(b), float(p)) for w, a, b, p in current
            )
            out.append(Segment(start=start, end=end, text=text, words=timed, **meta))
        current.clear()

    for i, word in enumerate(words):
        if current and word[1] - current[-1][2] >= PAUSE_SECONDS:
            flush()
        current.append(word)
        more = i + 1 < len(words)
        if (more and word[0].strip().endswith(SENTENCE_END)) or (
            word[2] - current[0][1] >= MAX_PIECE_SECONDS
        ):
            flush()
    flush()
    return out
