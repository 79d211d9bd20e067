"""Batched long-form mode (--asr-batch-size): VAD chunks decoded several at a time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLIPS, DATA, non_speech, subq_env, wait_for
from subq.engine import asr, media
from subq.engine.asr.batched import transcribe_batched
from subq.engine.asr.faster_whisper import CT2Model, load_ct2
from subq.engine.events import ModelLoaded
from subq.engine.jobs import JobState, Stage
from subq.engine.settings import Settings, SettingsError
from test_control import first_progress, states
from test_pipeline import srt_text, wer

RATE = 16000


@pytest.fixture(scope="module")
def model() -> CT2Model:
    return load_ct2("tiny.en", "cpu")


def options(batch: int = 2) -> asr.TranscribeOptions:
    return asr.TranscribeOptions(language="en", batch_size=batch)


def text_of(transcript: asr.Transcript) -> str:
    return " ".join(s.text for s in transcript.segments)


def test_long_file_is_cut_at_silences_and_decoded_in_batches(model, references):
    audio = media.decode_audio(DATA / "long.mp3")
    seeks: list[tuple[float, float]] = []
    result = transcribe_batched(
        model, audio, options(2), on_window=lambda cp, f: seeks.append((cp.seek, f))
    )
    # 69 s of speech -> 3 chunks of <= 30 s -> 2 model calls at batch 2, 1 at batch 4
    assert result.windows == len(seeks) == 2
    assert seeks[0] == (0.0, 0.0) and 30 < seeks[1][0] < 69 and seeks[1][1] < 1
    assert wer(references["long.mp3"], text_of(result)) <= 0.15, text_of(result)
    # subtitle-sized segments with timestamps inside each chunk, not 30 s blocks
    assert len(result.segments) >= 6
    assert all(s.end - s.start <= 15 for s in result.segments)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= 69.5
    assert transcribe_batched(model, audio, options(4)).windows == 1


@pytest.mark.parametrize("name", CLIPS)
def test_short_clips_match_sequential_accuracy(model, references, name):
    result = transcribe_batched(model, media.decode_audio(DATA / name), options(8))
    assert wer(references[name], text_of(result)) <= 0.15, text_of(result)


def test_non_speech_gives_no_segments(model):
    for kind in ("silence", "white noise"):
        assert transcribe_batched(model, non_speech(kind), options()).segments == ()


def test_stop_between_batches_and_resume_gives_the_same_transcript(model):
    audio = media.decode_audio(DATA / "long.mp3")
    full = transcribe_batched(model, audio, options(2))

    def stop_at_second_batch(cp: asr.Checkpoint, _fraction: float) -> None:
        if cp.seek > 0:
            raise RuntimeError("pause")

    with pytest.raises(asr.TranscriptionStopped) as stopped:
        transcribe_batched(model, audio, options(2), on_window=stop_at_second_batch)
    checkpoint = stopped.value.checkpoint
    assert checkpoint.segments and checkpoint.segments[-1].end <= checkpoint.seek + 0.01
    resumed = transcribe_batched(
        model, audio, options(2), resume=asr.Checkpoint.from_json(checkpoint.to_json())
    )
    assert resumed.segments[: len(checkpoint.segments)] == checkpoint.segments
    assert [s.text for s in resumed.segments] == [s.text for s in full.segments]
    for a, b in zip(resumed.segments, full.segments, strict=True):
        assert abs(a.start - b.start) < 0.2 and abs(a.end - b.end) < 0.2


def test_checkpoint_after_a_long_silence_points_into_the_audio_not_the_speech(model, references):
    """The pipeline numbers chunks in speech-only time; a checkpoint must use audio time, or
    a resume after a long silence would transcribe the stretch before it twice."""
    speech = media.decode_audio(DATA / "long.mp3")
    cut = int(27.8 * RATE)  # in the pause between two sentences
    audio = np.concatenate([speech[:cut], np.zeros(20 * RATE, np.float32), speech[cut:]])
    full = transcribe_batched(model, audio, options(1))
    seeks: list[float] = []

    def stop_at_second_batch(cp: asr.Checkpoint, _fraction: float) -> None:
        seeks.append(cp.seek)
        if cp.seek > 0:
            raise RuntimeError("pause")

    with pytest.raises(asr.TranscriptionStopped) as stopped:
        transcribe_batched(model, audio, options(1), on_window=stop_at_second_batch)
    checkpoint = stopped.value.checkpoint
    assert checkpoint.seek >= checkpoint.segments[-1].end - 0.01
    later = [s for s in full.segments if s.end > checkpoint.seek]
    assert later and abs(later[0].start - checkpoint.seek) < 1.0  # the next chunk's speech
    resumed = transcribe_batched(model, audio, options(1), resume=checkpoint)
    # Chunks after a resume are packed from a new start, so cue boundaries may differ from
    # the uninterrupted run; what must hold is nothing twice and nothing lost.
    kept = len(checkpoint.segments)
    assert resumed.segments[:kept] == checkpoint.segments
    assert all(s.start >= checkpoint.seek - 0.01 for s in resumed.segments[kept:])
    assert text_of(resumed).count("When we get back home") == 1
    ref = references["long.mp3"]
    assert wer(ref, text_of(resumed)) <= wer(ref, text_of(full)) + 0.03, text_of(resumed)


def test_engine_pauses_between_batches_and_resumes(make_engine, clips, references):
    # one worker, so the resumed job finds its model where it left it (one load)
    engine = make_engine(Settings(asr_batch_size=1, keep_alive=-1, device="cpu"), whole_queue=False)
    engine.start()
    engine.add([str(clips["long.mp3"])])
    assert wait_for(lambda: first_progress(engine, Stage.TRANSCRIBE, 0.3), 120)
    engine.pause()
    assert wait_for(lambda: states(engine) == [JobState.PAUSED], 60)
    assert engine.jobs()[0].resume_from > 20  # at least the first batch (~30 s) is kept
    engine.resume()
    assert wait_for(lambda: states(engine) == [JobState.DONE], 180)
    text = srt_text(clips["long.mp3"].with_suffix(".srt"))
    assert wer(references["long.mp3"], text) <= 0.15, text
    loaded = [e for e in engine.events if isinstance(e, ModelLoaded)]
    assert len(loaded) == 1 and "faster-whisper" in loaded[0].name  # auto picked it


def test_both_backends_run_batched_mode_from_the_command_line(tmp_path):
    clip = Path(shutil.copy(DATA / "podcast.mp3", tmp_path / "podcast.mp3"))
    with pytest.raises(SettingsError, match="--asr-batch-size"):
        Settings(asr_batch_size=-1).validate()
    for backend in ("whisper", "faster-whisper"):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "subq.tui.cli",
                "run",
                "--backend",
                backend,
                "--force",
                "--asr-batch-size",
                "4",
                "--state",
                str(tmp_path / "q.db"),
                str(clip),
            ],
            capture_output=True,
            text=True,
            env=subq_env(tmp_path),
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert ("(faster-whisper)" in proc.stdout) == (backend == "faster-whisper"), proc.stdout
        assert "dinner" in clip.with_suffix(".srt").read_text(encoding="utf-8").lower()
