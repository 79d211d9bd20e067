"""Every bad input a user throws in, in one batch with good files around it.

Each bad file fails with one line naming the file and the cause; the batch goes on; every
good output is written; nothing already done is lost. Unreadable inputs and unwritable
output folders are driven through the fault hook on the real open/create path, because
tests run as root, where permissions do not stop a read.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA
from subq.engine.jobs import JobState
from subq.engine.settings import Settings


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture
def bad_batch(tmp_path: Path) -> dict[str, Path]:
    media = tmp_path / "in"
    media.mkdir()
    files = {
        "good1": shutil.copy(DATA / "podcast.mp3", media / "good one.mp3"),
        "missing": media / "missing.mp4",
        "no_match": media / "*.webm",  # a glob that matches nothing
        "empty_folder": media / "no media here",
        "text": media / "notes.mp4",
        "truncated": media / "truncated.mp4",
        "noaudio": shutil.copy(DATA / "noaudio.mp4", media / "noaudio.mp4"),
        "zero": write_wav(media / "zero.wav", np.zeros(0)),
        "silence": write_wav(media / "silence.wav", np.zeros(16000 * 4)),
        "unreadable": shutil.copy(DATA / "lecture.mkv", media / "secret-unreadable.mkv"),
        "dash": shutil.copy(DATA / "talk.mp4", media / "-ünï côde talk.mp4"),
        "protocol": shutil.copy(DATA / "lecture.mkv", media / "concat:x.mkv"),
        "semicolon": shutil.copy(DATA / "podcast.mp3", media / "a;b.mp3"),
        "newline": shutil.copy(DATA / "podcast.mp3", media / "new\nline.mp3"),
        "good2": shutil.copy(DATA / "talk.mp4", media / "good2.mp4"),
    }
    files["empty_folder"].mkdir()
    (files["empty_folder"] / "readme.txt").write_text("nothing to see")
    files["text"].write_text("this is not a video\n" * 50)
    raw = (DATA / "talk.mp4").read_bytes()
    files["truncated"].write_bytes(raw[: len(raw) // 3])
    return {k: Path(v) for k, v in files.items()}


EXPECTED_ERRORS = {
    "missing": "no such file",
    "no_match": "no file matches this pattern",
    "empty_folder": "folder with no media",
    "text": "not a media file",
    "noaudio": "no audio stream",
    "zero": "empty",
    "unreadable": "permission denied",
}


def test_bad_inputs_fail_alone_with_one_line_and_good_ones_finish(
    make_engine, bad_batch, monkeypatch
):
    monkeypatch.setenv("SUBQ_FAULTS", "open:EACCES::secret-unreadable")
    engine = make_engine(whole_queue=False)
    engine.start()
    order = list(bad_batch)
    engine.add([str(bad_batch[k]) for k in order] + [str(bad_batch["good1"])])  # one twice
    assert engine.wait_idle(300)
    jobs = {Path(j.path).name: j for j in engine.jobs()}
    assert len(jobs) == len(order)  # the duplicate was added once
    assert any("given twice" in getattr(e, "message", "") for e in engine.events)
    by_key = {k: jobs[bad_batch[k].name] for k in order}
    for key, needle in EXPECTED_ERRORS.items():
        job = by_key[key]
        assert job.state == JobState.FAILED, (key, job)
        assert needle in job.error and "\n" not in job.error, (key, job.error)
        assert bad_batch[key].name in job.error
        assert "Traceback" not in job.error
    # A truncated container: either decoded as far as it goes, or failed in one line.
    trunc = by_key["truncated"]
    assert trunc.state in (JobState.DONE, JobState.FAILED)
    if trunc.state == JobState.FAILED:
        assert "truncated.mp4" in trunc.error and "\n" not in trunc.error
    # Silence is done, with an empty subtitle file and a clear note.
    silence = by_key["silence"]
    assert silence.state == JobState.DONE
    assert Path(silence.outputs[0]).read_text(encoding="utf-8") == ""
    assert any("no speech" in n for n in silence.notes)
    # Awkward names are opened as plain files and get their outputs.
    for key in ("good1", "good2", "dash", "protocol", "semicolon", "newline"):
        job = by_key[key]
        assert job.state == JobState.DONE, (key, job.error)
        out = Path(job.outputs[0])
        assert out.parent == bad_batch[key].parent and out.read_text(encoding="utf-8").strip()
    assert (bad_batch["good1"].parent / "concat:x.srt").exists()


def test_unwritable_output_folder_fails_the_job_only(make_engine, clips, tmp_path, monkeypatch):
    out = tmp_path / "locked"
    monkeypatch.setenv("SUBQ_FAULTS", f"create:EACCES::{out}")
    engine = make_engine(Settings(keep_alive=-1, output_dir=str(out)), whole_queue=False)
    engine.start()
    engine.add([str(clips["podcast.mp3"])])
    assert engine.wait_idle(120)
    job = engine.jobs()[0]
    assert job.state == JobState.FAILED
    assert "cannot write" in job.error and "Permission denied" in job.error
    assert str(out) in job.error
    # The transcript is kept: a retry once the folder is writable only writes.
    monkeypatch.delenv("SUBQ_FAULTS")
    engine.retry(job.id)
    assert engine.wait_idle(60)
    assert engine.jobs()[0].state == JobState.DONE
    assert (out / "podcast.srt").exists()
    assert any("reusing the stored transcript" in getattr(e, "message", "") for e in engine.events)


def test_disk_full_keeps_previous_subtitles(make_engine, clips, monkeypatch):
    srt = clips["podcast.mp3"].with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nprevious\n", encoding="utf-8")
    monkeypatch.setenv("SUBQ_FAULTS", "write:ENOSPC::podcast")
    engine = make_engine(Settings(keep_alive=-1, force=True), whole_queue=False)
    engine.start()
    engine.add([str(clips["podcast.mp3"]), str(clips["talk.mp4"])])
    assert engine.wait_idle(120)
    podcast, talk = engine.jobs()
    assert podcast.state == JobState.FAILED and "no space left" in podcast.error
    assert "previous" in srt.read_text(encoding="utf-8")
    assert talk.state == JobState.DONE
    assert sorted(p.name for p in srt.parent.iterdir() if p.name.startswith(".subq")) == []


def test_subq_run_reports_failures_in_one_line_each_and_exits_1(bad_batch, tmp_path):
    env_faults = "open:EACCES::secret-unreadable"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "subq.tui.cli",
            "run",
            "--state",
            str(tmp_path / "s.db"),
            str(bad_batch["missing"]),
            str(bad_batch["text"]),
            str(bad_batch["good1"]),
            str(bad_batch["unreadable"]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "SUBQ_FAULTS": env_faults},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert any("missing.mp4: no such file" in e for e in errors)
    assert any("notes.mp4: not a media file" in e for e in errors)
    assert any("secret-unreadable.mkv: permission denied" in e for e in errors)
    summary = proc.stdout.split("#  file")[-1]
    assert "good one.mp3  done" in summary.replace("   ", "  ") or "done" in summary
    assert (bad_batch["good1"].with_suffix(".srt")).exists()
