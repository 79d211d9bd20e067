"""Quality at a glance: flags for a finished transcript, from what the model itself reported,
so a person checking a 500-file batch knows which files to open first.

Four values, each judged against one threshold (findings.py names the flags):

- `no_speech`: the share of the file outside every transcribed segment. Flagged from 0.9:
  clean speech clips measured 0.03-0.17, speech followed by 30 s of silence 0.79, while
  white noise, a 440 Hz tone, a music-like melody (notes with harmonics and a beat),
  20-45 s of silence, and speech drowned in noise (SNR -13 dB) all measured 0.94-1.0
  (tiny.en found nothing there, or a stray "you").
- `avg_logprob`: the segments' average log-probability, weighted by their length. Flagged
  under -0.6: every clean clip measured -0.11 to -0.41 (the 3, 10 and 14 minute readings,
  at word error rates of 10-13 %, included); the same speech under noise at SNR +5, -1 and
  -7 dB -0.69, -0.97 and -1.40 (its words mostly wrong from the first), French through the
  English-only tiny.en -1.92.
- `compression_ratio`: the highest zlib compression ratio of the text of any 30 s of the
  file (the segments starting in it), whisper's own test for a decoder stuck in a loop.
  Flagged over whisper's threshold, 2.4: clean clips measured at most 2.05 a window (the
  14-minute reading; short clips 1.1-1.65), speech looped 3 to 8 times 2.98-4.57.
- `language_probability`: how sure the model was of the language it detected (only where it
  detected it). Flagged under 0.5, where the job table already marks the language with a
  "?": whisper base gave clean English 0.97, espeak's Spanish 0.88 and French 0.57, and
  noise, a tone, silence and the melody 0.19-0.65 (noise as Nynorsk).

The measurements are on the committed test clips and synthetic ones (tests/test_quality.py
builds the same), tiny.en and base with faster-whisper on the CPU.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

NO_SPEECH_SHARE = 0.9
LOW_LOGPROB = -0.6
HIGH_COMPRESSION = 2.4
LOW_LANGUAGE_PROBABILITY = 0.5
WINDOW = 30.0  # seconds of text compared at a time, as whisper decodes them


def measure(
    segments: Sequence[Any], duration: float | None, language_probability: float | None
) -> dict[str, float]:
    """What the flags are judged from; a value that cannot be told (no segments, a language
    given rather than detected) is left out."""
    values: dict[str, float] = {}
    end = max([duration or 0.0, *(s.end for s in segments)])
    spoken = [s for s in segments if s.end > s.start and s.text.strip()]
    if end > 0:
        values["no_speech"] = round(1.0 - _covered(spoken) / end, 3)
    length = sum(s.end - s.start for s in spoken)
    if length > 0:
        mean = sum(s.avg_logprob * (s.end - s.start) for s in spoken) / length
        values["avg_logprob"] = round(mean, 3)
        values["compression_ratio"] = round(max(_window_ratios(spoken)), 3)
    if language_probability is not None:
        values["language_probability"] = round(float(language_probability), 3)
    return values


def flags(values: dict[str, float]) -> tuple[str, ...]:
    """The flags `values` earn, in findings.FLAG_LABELS' order (most telling first)."""
    checks = {
        "no_speech": values.get("no_speech", 0.0) >= NO_SPEECH_SHARE,
        "repetitive": values.get("compression_ratio", 0.0) > HIGH_COMPRESSION,
        "low_logprob": values.get("avg_logprob", 0.0) < LOW_LOGPROB,
        "unsure_language": values.get("language_probability", 1.0) < LOW_LANGUAGE_PROBABILITY,
    }
    return tuple(name for name, flagged in checks.items() if flagged)


def compression_ratio(text: str) -> float:
    """whisper's measure: how much zlib shrinks the text (a loop shrinks a lot)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _window_ratios(segments: Sequence[Any]) -> list[float]:
    windows: dict[int, list[str]] = {}
    for s in segments:
        windows.setdefault(int(s.start // WINDOW), []).append(s.text.strip())
    return [compression_ratio(" ".join(texts)) for texts in windows.values()]


def _covered(segments: Sequence[Any]) -> float:
    """Seconds inside at least one segment (segments may touch or overlap a little)."""
    total, reach = 0.0, float("-inf")
    for s in sorted(segments, key=lambda s: s.start):
        start = max(s.start, reach)
        if s.end > start:
            total += s.end - start
        reach = max(reach, s.end)
    return total
