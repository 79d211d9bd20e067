"""The recogniser boundary: no invented text, safe checkpoints, clear model errors."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, NON_SPEECH, non_speech
from subq.engine import asr, media
from subq.engine.settings import Settings, SettingsError
from test_pipeline import wer

RATE = 16000


@pytest.fixture(scope="module")
def model():
    return asr.load_whisper("tiny.en", "cpu")


def options() -> asr.TranscribeOptions:
    return asr.TranscribeOptions(language="en")


@pytest.mark.parametrize("kind", NON_SPEECH)
def test_no_invented_words_on_non_speech(model, kind):
    audio = non_speech(kind)
    result = asr.transcribe(model, audio, options())
    assert result.segments == (), [s.text for s in result.segments]


def test_speech_after_twenty_seconds_of_silence_is_found(model, references):
    speech = media.decode_audio(DATA / "podcast.mp3")
    audio = np.concatenate([np.zeros(RATE * 20, dtype=np.float32), speech])
    result = asr.transcribe(model, audio, options())
    text = " ".join(s.text for s in result.segments)
    assert wer(references["podcast.mp3"], text) <= 0.15, text
    assert result.segments[0].start >= 19.0


def test_stop_inside_transcription_keeps_finished_windows_and_resume_continues(model):
    """The stop contract on two windows (40 s): what the first window finished is kept in
    the checkpoint, and a resume continues at its seek without redoing it. That the result
    equals a clean run's, window by window, is test_resume_identity's job."""
    audio = media.decode_audio(DATA / "long.mp3")[: 40 * RATE]
    calls = []

    def stop_at_second_window(cp: asr.Checkpoint, fraction: float) -> None:
        calls.append(cp.seek)
        if cp.seek > 0:
            raise RuntimeError("pause")

    with pytest.raises(asr.TranscriptionStopped) as stopped:
        asr.transcribe(model, audio, options(), on_window=stop_at_second_window)
    checkpoint = stopped.value.checkpoint
    assert calls[0] == 0 and len(calls) == 2
    assert 20 < checkpoint.seek < 31 and checkpoint.segments and checkpoint.prompt
    assert checkpoint.segments[-1].end <= checkpoint.seek + 0.01
    seen = []
    resumed = asr.transcribe(
        model,
        audio,
        options(),
        resume=asr.Checkpoint.from_json(checkpoint.to_json()),
        on_window=lambda cp, fraction: seen.append(cp.seek),
    )
    assert seen[0] == checkpoint.seek  # the first window is not decoded again
    kept = len(checkpoint.segments)
    assert resumed.segments[:kept] == checkpoint.segments
    new = resumed.segments[kept:]
    assert new and all(s.start >= checkpoint.seek - 0.01 for s in new)
    starts = [s.start for s in resumed.segments]
    assert starts == sorted(starts)


def test_checkpoint_with_payload_is_refused_and_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"dims": {}, "model_state_dict": Payload()}))
    with pytest.raises(asr.ModelLoadError) as err:
        asr.load_whisper(str(evil), "cpu")
    assert "refused" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "subq.tui.cli",
            "run",
            "--model",
            str(evil),
            "--state",
            str(tmp_path / "s.db"),
            str(DATA / "podcast.mp3"),
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "refused" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    assert not marker.exists()


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(asr.ModelLoadError, match="not a whisper model name"):
        asr.load_whisper("tiny.xx", "cpu")


def test_english_only_model_with_another_language_says_so():
    with pytest.raises(SettingsError, match="English-only"):
        Settings(language="de").validate()
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "--language", "de", "x.mp4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "English-only" in proc.stderr
