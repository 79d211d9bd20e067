"""Cut a chunk's timed words into subtitle-sized segments, and drop what whisper invents.

Both batched modes decode each VAD chunk as text only and get one block of words with
times; a 30 s block is no subtitle. These are the rules engine/asr_batched.py applies to
faster-whisper's words (`_pieces`), written over plain (word, start, end) triples so
openai-whisper's word dicts use them too, and the filter asr.py applies to every backend's
segments (`_drop_invented`). Both are copies, kept identical, until asr_batched.py and
asr.py (owned elsewhere while checkpoints are reworked) import them from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .asr import Segment, TranscribeOptions

SENTENCE_END = (".", "?", "!", "…")
MAX_PIECE_SECONDS = 7.0
PAUSE_SECONDS = 1.0
_PUNCTUATION_ONLY = re.compile(r"^[\W_]*$", re.UNICODE)

Word = tuple[str, float, float]  # the word with its leading space, start, end (seconds)


def pieces(
    words: Sequence[Word],
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
    current: list[Word] = []

    def flush() -> None:
        text = "".join(w[0] for w in current).strip()
        if text:
            start, end = offset + current[0][1], offset + current[-1][2]
            out.append(Segment(start=start, end=end, text=text, **meta))
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


def drop_invented(segments: Iterable[Segment], options: TranscribeOptions) -> tuple[Segment, ...]:
    """Drop empty or punctuation-only text, segments whisper itself thought were no speech
    (high no-speech and low log-probability), and those under twice the fallback threshold
    (single invented words on tones and music)."""
    kept = []
    for s in segments:
        if not s.text or _PUNCTUATION_ONLY.match(s.text) or s.end <= s.start:
            continue
        if s.no_speech_prob > options.no_speech_threshold and (
            s.avg_logprob < options.logprob_threshold
        ):
            continue
        if s.avg_logprob < 2 * options.logprob_threshold:
            continue
        kept.append(s)
    return tuple(kept)
