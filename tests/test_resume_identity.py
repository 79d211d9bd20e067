"""A file stopped any number of times and resumed comes out as one clean run (issue 13.1).

Identity holds window by window: the state a checkpoint keeps is all the next window
depends on. So the cheap check is one clean run that keeps every window's checkpoint, then
for a few windows k: resume from checkpoint k, decode one window, and compare with the clean
run's checkpoint k+1. One whole-file run per backend, stopped twice at points chosen by
progress and then finished, is compared with the clean run segment by segment.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import partial

import numpy as np
import pytest

pytest.importorskip("faster_whisper")

from conftest import DATA
from subq.engine import asr, media
from subq.engine.asr.base import ArrayAudio, stft_input
from subq.engine.asr.batched import transcribe_batched
from subq.engine.asr.faster_whisper import CT2Model, load_ct2, transcribe_ct2

Run = Callable[..., asr.Transcript]
RATE = 16000


@pytest.fixture(scope="module")
def ct2_model() -> CT2Model:
    return load_ct2("tiny.en", "cpu")


@pytest.fixture(scope="module")
def whisper_model():
    return asr.load_whisper("tiny.en", "cpu")


@pytest.fixture(scope="module")
def story() -> np.ndarray:
    return media.decode_audio(DATA / "story.mp3")


@pytest.fixture(scope="module")
def long_clip() -> np.ndarray:
    return media.decode_audio(DATA / "long.mp3")


def options(**kw: object) -> asr.TranscribeOptions:
    return asr.TranscribeOptions(language="en", **kw)  # type: ignore[arg-type]


def stored(checkpoint: asr.Checkpoint) -> asr.Checkpoint:
    """The checkpoint as the pipeline stores and reads it back (JSON in SQLite)."""
    loaded = asr.load_checkpoint(json.loads(json.dumps(checkpoint.to_json())))
    assert loaded is not None
    return loaded


def clean(run: Run, audio: np.ndarray, opts: asr.TranscribeOptions):
    checkpoints: list[asr.Checkpoint] = []
    result = run(audio, opts, on_window=lambda cp, _f: checkpoints.append(cp))
    return result, checkpoints


def stopped_at(run: Run, audio: np.ndarray, opts, resume, stop: Callable) -> asr.Checkpoint:
    with pytest.raises(asr.TranscriptionStopped) as stopped:
        run(audio, opts, resume=stored(resume) if resume else None, on_window=stop)
    return stopped.value.checkpoint


def one_window(run: Run, audio: np.ndarray, opts, resume: asr.Checkpoint) -> asr.Checkpoint:
    """Resume from `resume`, decode one window, stop at the next safe point."""
    calls = []

    def stop_at_second(cp: asr.Checkpoint, _fraction: float) -> None:
        calls.append(cp)
        if len(calls) == 2:
            raise RuntimeError("stop")

    return stopped_at(run, audio, opts, resume, stop_at_second)


def assert_same_segments(got, want) -> None:
    assert len(got) == len(want), (len(got), len(want))
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.text == b.text, (i, a, b)
        assert a.start == pytest.approx(b.start, abs=1e-6), (i, a, b)
        assert a.end == pytest.approx(b.end, abs=1e-6), (i, a, b)


def assert_close_segments(got, want, seconds: float = 0.1) -> None:
    assert [a.text for a in got] == [b.text for b in want]
    for a, b in zip(got, want, strict=True):
        assert abs(a.start - b.start) <= seconds and abs(a.end - b.end) <= seconds, (a, b)


def assert_same_checkpoint(got: asr.Checkpoint, want: asr.Checkpoint) -> None:
    assert_same_segments(got.segments, want.segments)
    assert got.frame == want.frame and got.seek == pytest.approx(want.seek)
    assert got.prompt == want.prompt
    assert got.last_speech == pytest.approx(want.last_speech, abs=1e-6)
    assert got.language == want.language
    assert (got.speech, got.chunks_done, got.batch_size) == (
        want.speech,
        want.chunks_done,
        want.batch_size,
    )


def stop_twice_and_finish(
    run: Run, audio: np.ndarray, opts, clean_cps, fractions=(0.4, 0.75)
) -> asr.Transcript:
    """Stop at 40 % and 75 % of the file (or at `fractions`, by the progress the hook is
    given), resume each time from the stored checkpoint, finish; every stop equals the
    clean run's checkpoint for the same window."""
    resume = None
    for fraction in fractions:

        def stop(cp: asr.Checkpoint, done: float, fraction=fraction, start=resume) -> None:
            if done >= fraction and (start is None or cp.seek > start.seek):
                raise RuntimeError("stop")

        resume = stopped_at(run, audio, opts, resume, stop)
        same_window = [cp for cp in clean_cps if cp.frame == resume.frame]
        assert same_window, resume.frame
        assert_same_checkpoint(resume, same_window[0])
    return run(audio, opts, resume=stored(resume))


# -- checkpoint format ---------------------------------------------------------------------


def test_old_text_prompt_checkpoint_is_refused_and_the_new_one_round_trips():
    old = {"seek": 27.6, "prompt": "Every morning I wake up early.", "segments": [[0, 2, "x"]]}
    assert asr.load_checkpoint(old) is None
    assert asr.load_checkpoint({"format": 99, "seek": 1.0, "frame": 100}) is None
    assert asr.load_checkpoint(None) is None
    with pytest.raises(ValueError):
        asr.Checkpoint.from_json(old)
    cp = asr.Checkpoint(
        seek=27.6,
        segments=(asr.Segment(0.0, 2.5, "Hello.", 0.01, -0.2),),
        frame=2760,
        prompt=(50363, 15496, 13, 50488),
        last_speech=2.5,
        language="en",
        speech=((0, 40000), (48000, 96000)),
        chunks_done=2,
        batch_size=2,
    )
    assert stored(cp) == cp
    assert cp.to_json()["format"] == asr.CHECKPOINT_FORMAT


# -- faster-whisper ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct2_clean(ct2_model, story):
    return clean(partial(transcribe_ct2, ct2_model), story, options())


def test_faster_whisper_resumes_window_by_window(ct2_model, story, ct2_clean):
    run = partial(transcribe_ct2, ct2_model)
    _result, cps = ct2_clean
    assert len(cps) >= 6
    for k in (1, len(cps) // 2, len(cps) - 2):
        assert_same_checkpoint(one_window(run, story, options(), cps[k]), cps[k + 1])


def test_faster_whisper_stopped_twice_equals_one_clean_run(ct2_model, story, ct2_clean):
    full, cps = ct2_clean
    resumed = stop_twice_and_finish(partial(transcribe_ct2, ct2_model), story, options(), cps)
    assert_same_segments(resumed.segments, full.segments)
    assert len(full.segments) >= 30


def test_window_features_are_the_librarys_whole_file_features(long_clip):
    """The first pass finds the whole file's loudest log-mel value as each library does
    (read forward on a streamed source, a chunk at a time); clamped to it, each window's
    features equal the library's features of the whole file for those frames."""
    from faster_whisper.feature_extractor import FeatureExtractor
    from subq.engine.asr.faster_whisper_loop import features, file_loudest
    from subq.engine.asr.loudness import loudest, whisper_frames
    from subq.engine.asr.whisper_loop import log10_mel, log_mel
    from whisper.audio import N_SAMPLES, log_mel_spectrogram

    fe, source = FeatureExtractor(), ArrayAudio(long_clip)
    whole = {"fw": fe(long_clip), "whisper": log_mel_spectrogram(long_clip, padding=N_SAMPLES)}
    streamed = media.open_audio(DATA / "long.mp3")
    found = {
        "fw": file_loudest(fe, streamed),
        "whisper": loudest(streamed, partial(log10_mel, n_mels=80), whisper_frames),
    }
    for name, theirs in whole.items():
        assert found[name] == pytest.approx(float(np.asarray(theirs).max()) * 4 - 4, abs=1e-6)
    frames = len(long_clip) // 160
    for frame, size in ((0, 3000), (2760, 3000), (5000, frames - 5000)):
        window = stft_input(source, frame, size)
        ours = {
            "fw": features(fe, window, found["fw"]),
            "whisper": log_mel(window, 80, found["whisper"]).numpy(),
        }
        for name, theirs in whole.items():
            theirs = np.asarray(theirs)[:, frame : frame + size]
            np.testing.assert_allclose(ours[name], theirs, atol=1e-6)


def test_faster_whisper_fallback_is_seeded_and_never_loads_the_model(
    ct2_model, long_clip, monkeypatch
):
    """A log-probability bar no window can meet makes the window sample: the seeded
    sampler gives the same sample again when the window is run again from its stored
    checkpoint (a file stopped inside a fallback window and resumed), and it samples on
    the model as loaded: no CTranslate2 model is built (before issue 28, one per such
    window)."""
    import ctranslate2

    built: list[object] = []
    real = ctranslate2.models.Whisper

    def counted(*args: object, **kwargs: object) -> object:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ctranslate2.models, "Whisper", counted)
    monkeypatch.setenv("SUBQ_FALLBACK_SAMPLER", "in-place")  # a GPU's way, here on the CPU
    hot = options(logprob_threshold=0.0, temperature=(0.0, 0.2))
    clip = long_clip  # three windows, each sampled
    run = partial(transcribe_ct2, ct2_model)
    first, cps = clean(run, clip, hot)
    assert first.stats["fallbacks"] >= 3 and len(cps) == 3 and cps[2].prompt  # (the sample)
    # the second window again from its stored checkpoint: a file stopped inside it, resumed
    assert_same_checkpoint(one_window(run, clip, hot, cps[1]), cps[2])
    assert built == []


# -- batched mode --------------------------------------------------------------------------


def test_batched_stopped_twice_equals_one_clean_run_and_window_by_window(ct2_model, story):
    run = partial(transcribe_batched, ct2_model)
    opts = options(batch_size=2)
    full, cps = clean(run, story, opts)
    assert len(cps) >= 4 and cps[1].speech and cps[1].chunks_done == 2
    assert_same_checkpoint(one_window(run, story, opts, cps[1]), cps[2])
    resumed = stop_twice_and_finish(run, story, opts, cps)
    assert_same_segments(resumed.segments, full.segments)
    # the out-of-memory retry's halved batch does not move where a resume starts
    lighter = dataclasses.replace(opts, batch_size=1)
    tail = run(story, lighter, resume=stored(cps[-1]))
    assert tail.segments[: len(cps[-1].segments)] == cps[-1].segments


# -- openai-whisper ------------------------------------------------------------------------


def test_whisper_stopped_twice_equals_one_clean_run(whisper_model, long_clip):
    """openai-whisper on the CPU is ~10x slower than faster-whisper, so on long.mp3 (three
    windows): a clean run, and one stopped at each window and finished."""
    run = partial(asr.transcribe, whisper_model)
    full, cps = clean(run, long_clip, options())
    assert len(cps) == 3 and all(cp.prompt for cp in cps[1:])
    assert any(t >= 50364 for t in cps[1].prompt)  # timestamp tokens kept in the prompt
    # windows start at 0, 40 % and 74 % of long.mp3
    resumed = stop_twice_and_finish(run, long_clip, options(), cps, fractions=(0.3, 0.6))
    assert_same_segments(resumed.segments, full.segments)
    assert all(s.words for s in full.segments if s.text)  # the loop keeps its words (issue 27)
    assert [s.words for s in resumed.segments] == [s.words for s in full.segments]


def test_whisper_fallback_is_seeded(whisper_model, long_clip):
    """(Its clean run equals the library's: tests/test_library_parity.py.)"""
    two = long_clip[: 40 * RATE]  # two windows: the first one is sampled, then stopped after
    hot = options(logprob_threshold=0.0, temperature=(0.0, 1.0))
    first = one_window(partial(asr.transcribe, whisper_model), two, hot, asr.Checkpoint(0.0))
    second = one_window(partial(asr.transcribe, whisper_model), two, hot, asr.Checkpoint(0.0))
    assert first.frame > 0 and first.prompt == ()  # the window was sampled at 1.0
    assert_same_checkpoint(first, second)
