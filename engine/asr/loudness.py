"""The whole file's loudest log-mel value, found in a streamed first pass (issue 21).

Why a pass: both libraries compute one log-mel of the whole file and clamp its dynamic
range to that file's loudest value minus 8 (80 dB). subq's loops compute each window
from its own samples (a file is never held whole), and once clamped each window to its
own loudest value instead. A window quieter than the file then reached the model with a
different floor, so long files drifted from the libraries' transcripts: on a 10-minute
recording 66 of faster-whisper's 150 segments differed in text or times, and on a
14-minute one greedy decoding with the previous-text prompt skipped 18 s and 10 s of
speech where the library skipped none. With the file's value, both loops equal their
library's `transcribe` segment for segment (tests/test_library_parity.py).

The pass reads the file forward a chunk of frames at a time (memory stays bounded), on a
second reader, so the loop's own reader still starts at the beginning; the value is kept
in every checkpoint, so a resumed file never repeats the pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .base import HOP_LENGTH, N_FFT, Audio, stft_input

CHUNK_FRAMES = 3000  # 30 s of frames a step: the loops' window, so the same memory
SILENT = -10.0  # log10 of the floor both libraries put under every mel value (1e-10)

LogMel = Callable[[np.ndarray], np.ndarray]  # samples from `stft_input` -> log10 mel
FrameCount = Callable[[int], int]  # the file's length in samples -> frames the library sees


def loudest(audio: Audio, log10_mel: LogMel, frames_of: FrameCount) -> float:
    """The largest log10 mel value over the frames the library computes for this file.

    `frames_of(length)` says how many frames that is: faster-whisper keeps length // 160
    + 1, openai-whisper every frame that sees a sample (its padding adds silent frames,
    which cannot be the loudest).
    """
    source = audio.reopen()
    best = SILENT
    frame = 0
    try:
        while True:
            limit = (frame + CHUNK_FRAMES) * HOP_LENGTH + N_FFT
            have = source.length_within(limit)
            end = frame + CHUNK_FRAMES if have >= limit else frames_of(have)
            if end <= frame:
                break
            best = max(best, float(log10_mel(stft_input(source, frame, end - frame)).max()))
            frame = end
    finally:
        if source is not audio and hasattr(source, "close"):
            source.close()
    return best


def faster_whisper_frames(length: int) -> int:
    """faster-whisper pads 160 zeros and drops the STFT's last frame: length // 160 + 1."""
    return length // HOP_LENGTH + 1


def whisper_frames(length: int) -> int:
    """Frames whose 400-sample window overlaps the audio (centres up to length + 199)."""
    return (length + N_FFT // 2 + HOP_LENGTH - 1) // HOP_LENGTH
