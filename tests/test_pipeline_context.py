"""The pipeline runs against any JobContext: here a stand-in for the engine (named as such),
with a real store and real files, in milliseconds. No model may load: the transcript is
already stored, or the input is bad."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA
from subq.engine import asr
from subq.engine.jobs import Job, JobState, Stage
from subq.engine.outputs import content_fingerprint
from subq.engine.pipeline import Pipeline, StopRequested, effective_settings, transcript_key
from subq.engine.settings import Settings
from subq.engine.store import Store


class NoModels:
    """Stand-in model manager: the tests here must never load a model."""

    def whisper(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no whisper model may load")

    def translator(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no translation model may load")


class StandInContext:
    """Stand-in for the engine (the JobContext): records what the pipeline told it."""

    def __init__(self, store: Store, stop_at: Stage | None = None) -> None:
        self.store = store
        self.models = NoModels()
        self.stages: list[Stage] = []
        self.lines: list[str] = []
        self.stop_at = stop_at

    def safe_point(self, job: Job) -> None:
        pass

    def enter_stage(self, job: Job, stage: Stage) -> Job:
        if stage == self.stop_at:
            raise StopRequested(JobState.PAUSED, "paused")
        self.stages.append(stage)
        return dataclasses.replace(job, stage=stage, progress=0.0)

    def progress(self, *args: Any) -> None:
        pass

    def log(self, level: str, message: str, job_id: int | None = None) -> None:
        self.lines.append(message)

    def oom(self, job: Job, message: str) -> None:
        raise AssertionError(message)

    def wait_for_memory(self, job: Job, error: Exception) -> bool:
        raise AssertionError(str(error))

    def started_anyway(self, job_id: int) -> bool:
        return False

    def nvml(self) -> None:
        return None


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


def _job_with_stored_transcript(store: Store, media: Path, settings: Settings) -> Job:
    job = store.add_job(str(media), settings)
    key = transcript_key(effective_settings(settings, "cpu"), content_fingerprint(media))
    rows = [asr.Segment(0.0, 1.5, "Hello there.").to_json()]
    assert store.claim(job.id) is None  # the pipeline writes as the job's holder
    store.set_transcript(job.id, key, rows, "en")
    return job


def test_a_stored_transcript_writes_subtitles_without_a_model(store, tmp_path):
    media = tmp_path / "talk.mp4"
    shutil.copy(DATA / "talk.mp4", media)
    settings = Settings(device="cpu", formats=("srt", "vtt"))
    job = _job_with_stored_transcript(store, media, settings)
    ctx = StandInContext(store)

    outcome = Pipeline(ctx, job).run()

    assert outcome.state == JobState.DONE, outcome.changes
    assert ctx.stages == [Stage.WRITE]
    assert any("reusing the stored transcript" in line for line in ctx.lines)
    srt = tmp_path / "talk.srt"
    assert "Hello there." in srt.read_text(encoding="utf-8")
    assert outcome.changes["outputs"] == (str(srt), str(tmp_path / "talk.vtt"))
    assert store.done_record(job.id) is not None


def test_a_stop_at_a_safe_point_keeps_the_stage(store, tmp_path):
    media = tmp_path / "talk.mp4"
    shutil.copy(DATA / "talk.mp4", media)
    job = _job_with_stored_transcript(store, media, Settings(device="cpu"))

    outcome = Pipeline(StandInContext(store, stop_at=Stage.WRITE), job).run()

    assert outcome.state == JobState.PAUSED
    assert not (tmp_path / "talk.srt").exists()


def test_a_bad_input_fails_the_job_with_its_name(store, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    job = store.add_job(str(bad), Settings(device="cpu"))

    outcome = Pipeline(StandInContext(store), job).run()

    assert outcome.state == JobState.FAILED
    assert "notes.mp4" in outcome.changes["error"]
