"""Silero voice-activity detection with onnxruntime alone: where the speech is, and chunks of
at most 30 s that start and end at silences.

Why not `faster_whisper.vad`: importing faster-whisper imports CTranslate2, whose wheels need
CUDA 12 (libcublas.so.12) and will not load next to a CUDA 13 torch, so openai-whisper's
batched mode on such a GPU machine could not cut its audio. The model is the same ONNX file
(`silero_vad_v6.onnx`, 1.2 MB) that faster-whisper ships in its `assets` folder; it is found
there without importing the package, or at the path in ``SUBQ_SILERO_VAD`` (the GPU check
kit carries a copy). The model call and the rules that turn probabilities into speech
regions are faster-whisper 1.2.1's `vad.py` (itself adapted from snakers4/silero-vad),
reproduced here with the same defaults, so both batched modes hear the same speech.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .base import SAMPLE_RATE, Audio, as_audio

WINDOW_SAMPLES = 512  # what Silero v5/v6 takes at 16 kHz
CONTEXT_SAMPLES = 64  # samples of the previous window prepended to each one
BLOCK_WINDOWS = 10_000  # windows per model call (faster-whisper's encoder_batch_size)
ENV_PATH = "SUBQ_SILERO_VAD"


class VadUnavailable(RuntimeError):
    """No Silero ONNX file or no onnxruntime: batched decoding cannot cut the audio."""


@dataclass(frozen=True)
class VadOptions:
    """faster-whisper's `VadOptions` fields, with the values its batched mode is run with."""

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_duration_ms: int = 0
    max_speech_duration_s: float = 30.0
    min_silence_duration_ms: int = 160
    speech_pad_ms: int = 400


def model_path() -> Path:
    """The Silero ONNX file: ``$SUBQ_SILERO_VAD``, else faster-whisper's installed asset
    (located by `find_spec`, which does not run the package, so CTranslate2 is never loaded)."""
    if env := os.environ.get(ENV_PATH):
        path = Path(env)
        if path.is_file():
            return path
        raise VadUnavailable(f"{ENV_PATH}={env}: no such file")
    spec = importlib.util.find_spec("faster_whisper")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder, "assets").glob("silero_vad*.onnx"))
        if found:
            return found[-1]
    raise VadUnavailable(
        "no Silero VAD model: install faster-whisper (its assets carry silero_vad_v6.onnx) "
        f"or set {ENV_PATH} to the .onnx file"
    )


@lru_cache(maxsize=1)
def _session() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise VadUnavailable("the Silero VAD needs the onnxruntime package") from exc
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(
        str(model_path()), providers=["CPUExecutionProvider"], sess_options=opts
    )


def speech_probabilities(audio: np.ndarray | Audio) -> tuple[np.ndarray, int]:
    """One speech probability per 512-sample window, and the audio's length in samples.

    The audio is zero-padded to whole windows (a whole window more where it ends on one, as
    faster-whisper pads); each window sees the last 64 samples of the one before, as Silero
    expects. The model runs on 10,000 windows a call, as faster-whisper runs it, carrying
    its state between calls; each call's windows are read from `audio` as they are needed,
    so a file is never held whole (20 MiB of samples at a time).
    """
    source = as_audio(audio)
    block = BLOCK_WINDOWS * WINDOW_SAMPLES
    h = np.zeros((1, 1, 128), dtype=np.float32)
    c = np.zeros((1, 1, 128), dtype=np.float32)
    context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
    outputs = []
    session = _session()
    start = 0
    while True:
        have = source.length_within(start + block)
        windows = BLOCK_WINDOWS if have == start + block else have // WINDOW_SAMPLES + 1
        windows -= start // WINDOW_SAMPLES if have < start + block else 0
        if windows <= 0:
            break
        samples = source.read(start, windows * WINDOW_SAMPLES).reshape(windows, WINDOW_SAMPLES)
        before = np.concatenate([context[None], samples[:-1, -CONTEXT_SAMPLES:]])
        context = samples[-1, -CONTEXT_SAMPLES:].copy()
        out, h, c = session.run(
            None, {"input": np.concatenate([before, samples], 1), "h": h, "c": c}
        )
        outputs.append(out.reshape(-1))
        if have < start + block:
            break
        start += block
    probs = np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)
    return probs, source.length_within(start + block)


def speech_regions(
    audio: np.ndarray | Audio, options: VadOptions = VadOptions()
) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech, padded, none longer than the maximum."""
    probs, length = speech_probabilities(audio)
    return regions_from_probabilities(probs, length, options)


def regions_from_probabilities(
    probs: np.ndarray, length: int, options: VadOptions = VadOptions()
) -> list[tuple[int, int]]:
    """faster-whisper's `get_speech_timestamps` rules: hysteresis between the two
    thresholds, a long region split at its last silence of >= 98 ms, padding split evenly
    where two regions are closer than twice the pad."""
    win = WINDOW_SAMPLES
    threshold = options.threshold
    neg = options.neg_threshold
    neg = max(threshold - 0.15, 0.01) if neg is None else neg
    min_speech = SAMPLE_RATE * options.min_speech_duration_ms / 1000
    pad = SAMPLE_RATE * options.speech_pad_ms / 1000
    max_speech = SAMPLE_RATE * options.max_speech_duration_s - win - 2 * pad
    min_silence = SAMPLE_RATE * options.min_silence_duration_ms / 1000
    min_silence_at_max = SAMPLE_RATE * 98 / 1000

    triggered = False
    speeches: list[list[int]] = []
    start = 0
    temp_end = prev_end = next_start = 0
    for i, prob in enumerate(probs):
        here = win * i
        if prob >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = here
        if prob >= threshold and not triggered:
            triggered, start = True, here
            continue
        if triggered and here - start > max_speech:
            if prev_end:
                speeches.append([start, prev_end])
                if next_start < prev_end:
                    triggered = False
                else:
                    start = next_start
                prev_end = next_start = temp_end = 0
            else:
                speeches.append([start, here])
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if prob < neg and triggered:
            if not temp_end:
                temp_end = here
            if here - temp_end > min_silence_at_max:
                prev_end = temp_end
            if here - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                speeches.append([start, temp_end])
            prev_end = next_start = temp_end = 0
            triggered = False
            continue
    if triggered and length - start > min_speech:
        speeches.append([start, length])

    for i, speech in enumerate(speeches):
        if i == 0:
            speech[0] = int(max(0, speech[0] - pad))
        if i != len(speeches) - 1:
            gap = speeches[i + 1][0] - speech[1]
            if gap < 2 * pad:
                speech[1] += int(gap // 2)
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - gap // 2))
            else:
                speech[1] = int(min(length, speech[1] + pad))
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - pad))
        else:
            speech[1] = int(min(length, speech[1] + pad))
    return [(int(a), int(b)) for a, b in speeches]


def chunk_spans(regions: list[tuple[int, int]], max_seconds: float = 30.0) -> list[tuple[int, int]]:
    """Join consecutive speech regions into spans of the original audio of at most
    `max_seconds` (silences inside a span kept, so a word's time in the chunk plus the
    span's start is its time in the file); a span always starts and ends at a region edge."""
    limit = int(max_seconds * SAMPLE_RATE)
    spans: list[tuple[int, int]] = []
    for start, end in regions:
        if spans and end - spans[-1][0] <= limit:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, min(end, start + limit)))
    return spans
