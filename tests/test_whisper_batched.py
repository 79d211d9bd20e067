"""Batched openai-whisper (`--backend whisper --asr-batch-size N`), with the real tiny.en.

The VAD here is engine/asr/vad.py (onnxruntime only), which must cut exactly where
faster-whisper's does, so both batched modes hear the same speech.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import DATA, non_speech
from subq.engine import asr, media
from subq.engine.asr import vad
from subq.engine.asr.whisper_batched import transcribe_whisper_batched
from test_pipeline import wer


@pytest.fixture(scope="module")
def model() -> Any:
    return asr.load_whisper("tiny.en", "cpu")


@pytest.fixture(scope="module")
def long_audio() -> np.ndarray:
    return media.decode_audio(DATA / "long.mp3")


@pytest.fixture(scope="module")
def long_batch_1(model, long_audio) -> asr.Transcript:
    """long.mp3 (3 chunks) one chunk per batch: three batches, two boundaries to stop at."""
    return transcribe_whisper_batched(model, long_audio, options(1))


def options(batch: int) -> asr.TranscribeOptions:
    return asr.TranscribeOptions(language="en", batch_size=batch)


def text_of(transcript: asr.Transcript) -> str:
    return " ".join(s.text for s in transcript.segments)


def test_vad_without_faster_whisper_cuts_where_faster_whisper_does(long_audio):
    fw_vad = pytest.importorskip("faster_whisper.vad")
    theirs = fw_vad.get_speech_timestamps(
        long_audio, fw_vad.VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160)
    )
    regions = vad.speech_regions(long_audio)
    assert regions == [(r["start"], r["end"]) for r in theirs]
    spans = vad.chunk_spans(regions)
    assert len(spans) == 3 and all(b - a <= 30 * vad.SAMPLE_RATE for a, b in spans)
    assert [a for a, _ in spans] == sorted(a for a, _ in spans)


def test_story_is_as_accurate_as_sequential_whisper(model, references):
    """Three minutes of distinct sentences: batching gives up the prompt and fallback, and
    may cost at most 0.02 WER against openai-whisper's own sequential loop."""
    audio = media.decode_audio(DATA / "story.mp3")
    ref = references["story.mp3"]
    sequential = asr.transcribe(model, audio, asr.TranscribeOptions(language="en"))
    batched = transcribe_whisper_batched(model, audio, options(8))
    assert batched.windows == 1  # 7 chunks of <= 30 s, one decode call
    assert wer(ref, text_of(batched)) <= wer(ref, text_of(sequential)) + 0.02, text_of(batched)
    # cues, not 30 s blocks, in order and inside the file
    assert len(batched.segments) >= 35
    assert all(s.end - s.start <= 10 for s in batched.segments)
    starts = [s.start for s in batched.segments]
    assert starts == sorted(starts) and batched.segments[-1].end <= len(audio) / 16000 + 0.1


def test_pause_at_a_batch_boundary_and_resume_gives_identical_segments(
    model, long_audio, long_batch_1
):
    seen: list[tuple[int, float]] = []

    def stop_at_second_batch(cp: asr.Checkpoint, fraction: float) -> None:
        seen.append((cp.chunks_done, fraction))
        if cp.chunks_done == 1:
            raise RuntimeError("pause")

    with pytest.raises(asr.TranscriptionStopped) as stopped:
        transcribe_whisper_batched(model, long_audio, options(1), on_window=stop_at_second_batch)
    checkpoint = stopped.value.checkpoint
    assert seen[0] == (0, 0.0) and 0 < seen[1][1] < 1
    assert checkpoint.batch_size == 1 and len(checkpoint.speech) == 3
    assert checkpoint.segments == long_batch_1.segments[: len(checkpoint.segments)]
    assert checkpoint.segments and checkpoint.segments[-1].end <= checkpoint.seek + 0.01
    # through JSON, as the store keeps it; a larger batch size asked for on resume does not
    # change the batches (the checkpoint's own size is used; only a smaller one, the
    # pipeline's retry after out-of-memory, would be)
    stored = asr.Checkpoint.from_json(checkpoint.to_json())
    resumed = transcribe_whisper_batched(model, long_audio, options(3), resume=stored)
    assert resumed.segments == long_batch_1.segments
    assert resumed.windows == 2


def test_batch_size_does_not_change_the_text(model, long_audio, long_batch_1, references):
    """Three chunks in one decode call: the same words as one chunk per call. (Times may
    differ in the last digits: a batched matmul adds in another order.)"""
    together = transcribe_whisper_batched(model, long_audio, options(3))
    assert together.windows == 1 and long_batch_1.windows == 3
    assert [s.text for s in together.segments] == [s.text for s in long_batch_1.segments]
    for a, b in zip(together.segments, long_batch_1.segments, strict=True):
        assert abs(a.start - b.start) < 0.05 and abs(a.end - b.end) < 0.05
    assert wer(references["long.mp3"], text_of(together)) <= 0.15, text_of(together)


def test_non_speech_gives_no_segments_and_no_decode_call(model):
    for kind in ("silence", "white noise"):
        result = transcribe_whisper_batched(model, non_speech(kind), options(4))
        assert result.segments == () and result.windows == 0
