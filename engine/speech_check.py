"""Is anyone speaking under these lines? The Silero VAD over a few stretches of one file.

The clean-up (junk.py) asks this only about the lines it suspects whisper invented, so a
file costs nothing here unless one is found. It reads untrusted media, so it runs where the
engine reads media: in the prober's reader child (prober.py), never in the engine's own
process. The file is decoded forward from its start by the same reader the workers use
(media.AudioSource), so each stretch holds the samples the model heard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import media
from .asr import vad
from .options import SAMPLE_RATE

LEAD = 1.0  # seconds the VAD hears before a stretch, so its state has settled by then
SPEECH = 0.5  # a 32 ms window is speech at this probability (the VAD's own threshold)


def speech_shares(path: Path, spans: list[tuple[float, float]]) -> list[float] | None:
    """The share of each (start, end) span, in seconds, whose VAD windows hold speech; None
    where the VAD cannot run (no onnxruntime, no Silero model). MediaError for a file that
    cannot be read."""
    try:
        vad.model_path()
    except vad.VadUnavailable:
        return None
    order = sorted(range(len(spans)), key=lambda n: spans[n])
    shares = [0.0] * len(spans)
    source = media.AudioSource(Path(path))
    try:
        read_from = 0
        for n in order:
            start, end = spans[n]
            first = max(read_from, int(max(0.0, start - LEAD) * SAMPLE_RATE))
            last = max(first + vad.WINDOW_SAMPLES, int(end * SAMPLE_RATE))
            samples = source.read(first, last - first)
            read_from = first  # reads only move forward
            try:
                probs, _ = vad.speech_probabilities(samples)
            except vad.VadUnavailable:
                return None
            shares[n] = _share(probs, first, start * SAMPLE_RATE, end * SAMPLE_RATE)
    finally:
        source.close()
    return shares


def _share(probs: np.ndarray, first: int, start: float, end: float) -> float:
    """The share of the windows centred in [start, end] that hold speech."""
    centres = first + vad.WINDOW_SAMPLES * (np.arange(len(probs)) + 0.5)
    inside = (centres >= start) & (centres <= end)
    if not inside.any():  # shorter than one window: the one nearest its middle
        inside = np.abs(centres - (start + end) / 2) == np.abs(centres - (start + end) / 2).min()
    return round(float(np.mean(probs[inside] >= SPEECH)), 3)
