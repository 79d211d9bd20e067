"""The faster-whisper (CTranslate2) backend: accuracy, safe checkpoints, engine, memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faster_whisper")

from conftest import CLIPS, DATA, NON_SPEECH, non_speech, wait_for
from subq.engine import asr, media
from subq.engine.asr.faster_whisper import CT2Model, load_ct2, parse_device, transcribe_ct2
from subq.engine.events import ModelLoaded
from subq.engine.jobs import JobState, Stage
from subq.engine.model_types import WHISPER
from subq.engine.outputs import content_fingerprint
from subq.engine.pipeline import effective_settings, transcript_key
from subq.engine.settings import Settings
from test_control import first_progress, states
from test_memory import assert_unload_returns_half
from test_pipeline import srt_text, wer

RATE = 16000
BACKEND = "faster-whisper"


@pytest.fixture(scope="module")
def model() -> CT2Model:
    return load_ct2("tiny.en", "cpu")


def options() -> asr.TranscribeOptions:
    return asr.TranscribeOptions(language="en")


def text_of(transcript: asr.Transcript) -> str:
    return " ".join(s.text for s in transcript.segments)


def test_bundled_weights_load_as_int8_with_a_footprint(model):
    assert model.device == "cpu" and model.compute_type == "int8"
    assert 20e6 < model.footprint_bytes < 300e6
    assert asr.footprint(model) == model.footprint_bytes


@pytest.mark.parametrize("name", [*CLIPS, "long.mp3"])
def test_committed_clips_are_accurate(model, references, name):
    result = transcribe_ct2(model, media.decode_audio(DATA / name), options())
    assert wer(references[name], text_of(result)) <= 0.15, text_of(result)
    assert result.language == "en" and result.windows >= 1
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    assert all(s.text == s.text.strip() and s.end > s.start for s in result.segments)


@pytest.mark.parametrize("kind", NON_SPEECH)
def test_no_invented_words_on_non_speech(model, kind):
    audio = non_speech(kind)
    result = transcribe_ct2(model, audio, options())
    assert result.segments == (), [s.text for s in result.segments]


def test_stop_at_second_window_keeps_finished_segments_and_resume_matches(model, references):
    audio = media.decode_audio(DATA / "long.mp3")
    seen: list[tuple[float, float]] = []

    def stop_at_second_window(cp: asr.Checkpoint, fraction: float) -> None:
        seen.append((cp.seek, fraction))
        if cp.seek > 0:
            raise RuntimeError("pause")

    with pytest.raises(asr.TranscriptionStopped) as stopped:
        transcribe_ct2(model, audio, options(), on_window=stop_at_second_window)
    checkpoint = stopped.value.checkpoint
    assert isinstance(stopped.value.cause, RuntimeError)
    assert seen[0] == (0.0, 0.0) and len(seen) == 2
    assert 20 < checkpoint.seek < 31 and checkpoint.segments and checkpoint.prompt
    assert checkpoint.segments[-1].end <= checkpoint.seek + 0.01
    assert 0 < seen[-1][1] < 1

    resumed_seeks: list[float] = []
    resumed = transcribe_ct2(
        model,
        audio,
        options(),
        resume=asr.Checkpoint.from_json(checkpoint.to_json()),
        on_window=lambda cp, _f: resumed_seeks.append(cp.seek),
    )
    assert resumed_seeks[0] == pytest.approx(checkpoint.seek)
    assert resumed.segments[: len(checkpoint.segments)] == checkpoint.segments
    full = transcribe_ct2(model, audio, options())
    ref = references["long.mp3"]
    assert wer(ref, text_of(resumed)) <= wer(ref, text_of(full)) + 0.02, text_of(resumed)
    starts = [s.start for s in resumed.segments]
    assert starts == sorted(starts)


def test_injected_fault_fires_per_window(model, monkeypatch):
    monkeypatch.setenv("SUBQ_FAULTS", "transcribe:EIO:1")
    with pytest.raises(OSError):
        transcribe_ct2(model, media.decode_audio(DATA / "podcast.mp3"), options())
    result = transcribe_ct2(model, media.decode_audio(DATA / "podcast.mp3"), options())
    assert result.segments  # the fault was used up; the model is still usable


def test_bad_models_are_one_line_errors(tmp_path):
    not_ct2 = tmp_path / "weights.pt"
    not_ct2.write_bytes(b"\0" * 16)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a model")
    for name, expected in [
        (str(not_ct2), "CTranslate2 model folder"),
        (str(tmp_path), "CTranslate2 model folder"),
        ("tiny.xx", "not a faster-whisper model name"),
        ("base.en", "cannot download"),  # HF_HUB_OFFLINE=1 and an empty cache
        (str(broken), "cannot load the CTranslate2 model"),
    ]:
        with pytest.raises(asr.ModelLoadError) as err:
            load_ct2(name, "cpu")
        assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_devices():
    import ctranslate2

    assert parse_device("cpu") == ("cpu", 0)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("cuda:3") == ("cuda", 3)
    with pytest.raises(asr.ModelLoadError):
        parse_device("tpu")
    if ctranslate2.get_cuda_device_count() == 0:
        with pytest.raises(asr.ModelLoadError) as err:
            load_ct2("tiny.en", "cuda")
        assert "\n" not in str(err.value)


def test_engine_batch_reuses_one_model_and_unload_returns_memory(
    make_engine, clips, references, tmp_path
):
    engine = make_engine(  # one worker: the model is loaded once and reused by every file
        Settings(backend=BACKEND, keep_alive=-1, device="cpu"),
        state=tmp_path / "s.db",
        whole_queue=False,
    )
    engine.start()
    engine.add([str(clips[name]) for name in CLIPS])
    assert engine.wait_idle(300)
    assert states(engine) == [JobState.DONE] * len(CLIPS), [j.error for j in engine.jobs()]
    for name in CLIPS:
        text = srt_text(clips[name].with_suffix(".srt"))
        assert wer(references[name], text) <= 0.15, text
    assert engine.models.load_counts[WHISPER] == 1
    loaded = [e for e in engine.events if isinstance(e, ModelLoaded)]
    assert len(loaded) == 1 and BACKEND in loaded[0].name and loaded[0].bytes > 20e6

    assert_unload_returns_half(engine, loaded[0])


def test_engine_pause_mid_file_and_resume(make_engine, clips, references, tmp_path):
    engine = make_engine(Settings(backend=BACKEND, keep_alive=-1), whole_queue=False)
    engine.start()
    engine.add([str(clips["long.mp3"])])
    assert wait_for(lambda: first_progress(engine, Stage.TRANSCRIBE, 0.3), 120)
    engine.pause()
    assert wait_for(lambda: states(engine) == [JobState.PAUSED], 60)
    job = engine.jobs()[0]
    assert job.resume_from > 20
    key = transcript_key(
        effective_settings(job.settings, "cpu"), content_fingerprint(Path(job.path))
    )
    assert engine.store.checkpoint(job.id, key)["segments"]
    engine.resume()
    assert wait_for(lambda: states(engine) == [JobState.DONE], 180)
    text = srt_text(clips["long.mp3"].with_suffix(".srt"))
    assert wer(references["long.mp3"], text) <= 0.02, text


def test_silent_windows_are_safe_points_too(model, references):
    speech = media.decode_audio(DATA / "podcast.mp3")
    audio = np.concatenate([speech, np.zeros(RATE * 70, dtype=np.float32)])
    seeks: list[float] = []
    result = transcribe_ct2(model, audio, options(), on_window=lambda cp, _f: seeks.append(cp.seek))
    # (both backends may still invent a short phrase in a long trailing silence; that is the
    # shared no-speech filter's business, not this test's)
    assert wer(references["podcast.mp3"], result.segments[0].text) <= 0.15
    # the silent windows yield no segment of their own, yet each one was announced
    assert len(seeks) == result.windows >= 3 and seeks == sorted(seeks) and seeks[-1] > 30


def test_ctranslate2_out_of_memory_becomes_the_error_the_pipeline_retries():
    import torch

    class OutOfMemory:
        frames_per_second = 100

        def encode(self, features):
            raise AssertionError("not reached")

        @property
        def model(self):
            raise RuntimeError("CUDA failed with error out of memory")

        feature_extractor = model  # the first thing the loop asks of it (the loudness pass)

    fake = CT2Model(model=OutOfMemory(), footprint_bytes=1, device="cuda:0")
    with pytest.raises(torch.OutOfMemoryError):
        transcribe_ct2(fake, np.zeros(RATE, dtype=np.float32), options())
    assert "encode" not in vars(fake.model)  # the hook is removed again


def test_progress_moves_within_a_window(make_engine, clips):
    """A 12 s clip is one window: progress comes from each finished segment, not only 0 and 1."""
    from subq.engine.events import StageProgressed

    engine = make_engine(Settings(backend=BACKEND, keep_alive=-1), whole_queue=False)
    engine.start()
    engine.add([str(clips["talk.mp4"])])
    assert engine.wait_idle(120)
    assert states(engine) == [JobState.DONE]
    fractions = [
        e.fraction
        for e in engine.events
        if isinstance(e, StageProgressed) and e.stage == Stage.TRANSCRIBE
    ]
    assert any(0 < f < 1 for f in fractions), fractions
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
