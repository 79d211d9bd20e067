"""End to end: real clips, the real bundled tiny.en, real files written."""

from __future__ import annotations

import os
from pathlib import Path

import jiwer
import pytest
from conftest import CLIPS, wait_for
from subq.engine import media, memory
from subq.engine.jobs import JobState
from subq.engine.model_types import WHISPER
from subq.engine.settings import Settings


def srt_text(path: Path) -> str:
    """The words of an SRT file, without numbers and timestamps."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return " ".join(
        line for line in lines if line.strip() and "-->" not in line and not line.isdigit()
    )


def wer(reference: str, hypothesis: str) -> float:
    from whisper.normalizers import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return jiwer.wer(norm(reference), norm(hypothesis))


@pytest.fixture
def finished_batch(make_engine, clips):
    engine = make_engine(Settings(keep_alive=-1, formats=("srt", "vtt")), whole_queue=False)
    engine.start()
    engine.add([str(clips[name]) for name in CLIPS])
    assert engine.wait_idle(300)
    return engine


def test_batch_writes_accurate_subtitles_and_loads_whisper_once(finished_batch, clips, references):
    engine = finished_batch
    jobs = engine.jobs()
    assert [j.state for j in jobs] == [JobState.DONE] * 3
    # loaded once per worker for the whole batch (the CPU default runs memory.CPU_WORKERS)
    assert 1 <= engine.models.load_counts[WHISPER] <= memory.CPU_WORKERS < len(CLIPS)
    total_errors = 0.0
    for name in CLIPS:
        srt = clips[name].with_suffix(".srt")
        vtt = clips[name].with_suffix(".vtt")
        assert srt.exists() and vtt.exists()
        assert vtt.read_text(encoding="utf-8").startswith("WEBVTT\n")
        score = wer(references[name], srt_text(srt))
        assert score <= 0.15, (name, srt_text(srt))
        total_errors += score
    assert total_errors / len(CLIPS) <= 0.05


def test_subq_adds_no_loss_against_direct_whisper(finished_batch, clips):
    """subq's transcript of each clip equals whisper.transcribe on the same audio."""
    import whisper
    from subq.engine.asr import _set_bundled_alignment_heads
    from subq.engine.bundled import bundled_checkpoint

    model = whisper.load_model(str(bundled_checkpoint()), device="cpu")
    _set_bundled_alignment_heads(model)
    for name in CLIPS:
        audio = media.decode_audio(clips[name])
        direct = whisper.transcribe(
            model, audio, fp16=False, language="en", verbose=None, word_timestamps=True
        )
        direct_text = " ".join(s["text"].strip() for s in direct["segments"])
        assert " ".join(srt_text(clips[name].with_suffix(".srt")).split()) == " ".join(
            direct_text.split()
        )


def test_rerun_skips_done_and_force_redoes(make_engine, clips, tmp_path):
    state = tmp_path / "state.sqlite3"
    first = make_engine(Settings(keep_alive=-1), state=state, whole_queue=False)
    first.start()
    first.add([str(clips["podcast.mp3"])])
    assert first.wait_idle(120)
    first.shutdown()
    srt = clips["podcast.mp3"].with_suffix(".srt")
    mtime = srt.stat().st_mtime_ns

    again = make_engine(Settings(keep_alive=-1), state=state, whole_queue=False)
    again.start()
    again.add([str(clips["podcast.mp3"])])
    assert again.wait_idle(60)
    assert again.jobs()[0].state == JobState.DONE
    assert again.models.load_counts[WHISPER] == 0  # nothing was redone
    assert srt.stat().st_mtime_ns == mtime
    again.shutdown()

    forced = make_engine(Settings(keep_alive=-1, force=True), state=state, whole_queue=False)
    forced.start()
    forced.add([str(clips["podcast.mp3"])])
    assert forced.wait_idle(120)
    assert forced.jobs()[0].state == JobState.DONE
    assert srt.stat().st_mtime_ns != mtime


def test_existing_outputs_from_elsewhere_are_skipped(make_engine, clips):
    srt = clips["talk.mp4"].with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nmine\n", encoding="utf-8")
    engine = make_engine(Settings(keep_alive=-1), whole_queue=False)
    engine.start()
    engine.add([str(clips["talk.mp4"])])
    assert engine.wait_idle(60)
    job = engine.jobs()[0]
    assert job.state == JobState.SKIPPED and "--force" in (job.error or "")
    assert "mine" in srt.read_text(encoding="utf-8")


def test_output_dir_and_changed_input_is_redone(make_engine, clips, tmp_path):
    out = tmp_path / "subs"
    settings = Settings(keep_alive=-1, output_dir=str(out))
    engine = make_engine(settings, whole_queue=False)
    engine.start()
    engine.add([str(clips["podcast.mp3"])])
    assert engine.wait_idle(120)
    srt = out / "podcast.srt"
    assert srt.exists()
    assert not clips["podcast.mp3"].with_suffix(".srt").exists()
    os.utime(srt, (1_000_000, 1_000_000))
    # Unchanged input: adding it again keeps it done.
    engine.add([str(clips["podcast.mp3"])])
    assert engine.wait_idle(60)
    assert srt.stat().st_mtime == 1_000_000
    # The input changes (new mtime): skip-if-done compares the input's signature.
    os.utime(clips["podcast.mp3"], (2_000_000, 2_000_000))
    engine.add([str(clips["podcast.mp3"])])
    assert wait_for(lambda: srt.stat().st_mtime != 1_000_000, 120)
    assert wait_for(lambda: engine.jobs()[0].state == JobState.DONE, 30)
