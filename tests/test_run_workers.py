"""What `subq run` prints when several workers run jobs at once, and when a worker dies.

The printer hears the engine's own event objects through the engine's subscriber list (the
path its threads publish on); the workers themselves are tested in tests/test_worker.py.
"""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from subq.engine.events import (
    JobChanged,
    LogEmitted,
    StageProgressed,
    Subscribers,
    WorkerChanged,
)
from subq.engine.headless import ConsolePrinter, EventWriter
from subq.engine.jobs import Job, JobState, Stage
from subq.engine.settings import Settings


class Terminal(io.StringIO):
    """Output that says it is a terminal, so the printer redraws its progress line."""

    def isatty(self) -> bool:
        return True

    def screen(self) -> list[str]:
        """The lines as a terminal shows them: each \\r\\033[K redraw replaces the line."""
        lines = []
        for raw in self.getvalue().split("\n"):
            lines.append(raw.split("\r\033[K")[-1])
        return lines


def job(job_id: int, name: str, **kw: object) -> Job:
    return Job(id=job_id, path=f"/media/{name}", settings=Settings(), **kw)  # type: ignore[arg-type]


def start(publish, j: Job, device: str) -> Job:
    running = dataclasses.replace(j, state=JobState.RUNNING, stage=Stage.TRANSCRIBE)
    publish(WorkerChanged(device=device, state="busy", pid=100 + j.id, job_id=j.id))
    publish(JobChanged(job=running, previous=JobState.QUEUED))
    return running


@pytest.fixture
def printed(monkeypatch) -> tuple[Subscribers, Terminal]:
    monkeypatch.setenv("COLUMNS", "100")
    out = Terminal()
    subscribers = Subscribers()
    subscribers.add(ConsolePrinter(out))
    return subscribers, out


def test_two_jobs_at_once_share_one_progress_line_naming_each_job_and_device(printed):
    subscribers, out = printed
    publish = subscribers.publish
    talk, podcast = job(1, "talk.mp4"), job(2, "podcast.mp3")
    for j in (talk, podcast):
        publish(JobChanged(job=j))
    talk = start(publish, talk, "cpu#1")
    podcast = start(publish, podcast, "cpu#2")
    publish(StageProgressed(job_id=1, stage=Stage.TRANSCRIBE, fraction=0.5, device="cpu#1"))
    publish(StageProgressed(job_id=2, stage=Stage.TRANSCRIBE, fraction=0.25, device="cpu#2"))
    screen = out.screen()
    assert screen[0] == "Processing (1/2): talk.mp4"
    assert screen[1] == "Processing (2/2): podcast.mp3 on cpu#2"
    assert screen[-1] == "  talk.mp4 transcribe 50% cpu#1 | podcast.mp3 transcribe 25% cpu#2"
    assert all(len(line) < 100 for line in screen)

    done = dataclasses.replace(
        talk, state=JobState.DONE, stage_times=(("transcribe", 2.0),), outputs=("/o/talk.srt",)
    )
    publish(JobChanged(job=done, previous=JobState.RUNNING))
    screen = out.screen()
    assert "  talk.mp4: done in 2.0s (transcribe 2.0s)" in screen  # names the job it is about
    publish(StageProgressed(job_id=2, stage=Stage.TRANSCRIBE, fraction=0.75, device="cpu#2"))
    assert out.screen()[-1] == "  podcast.mp3 transcribe 75% cpu#2"  # the finished one left


def test_one_job_at_a_time_prints_as_before(printed):
    subscribers, out = printed
    publish = subscribers.publish
    talk = job(1, "talk.mp4")
    publish(JobChanged(job=talk))
    start(publish, talk, "cpu")
    publish(StageProgressed(job_id=1, stage=Stage.TRANSCRIBE, fraction=0.5, device="cpu"))
    screen = out.screen()
    assert screen[0] == "Processing (1/1): talk.mp4"
    assert screen[-1].startswith("  transcribe [############............]  50%")


def test_a_worker_death_is_one_line_and_the_resume_is_not_another_file(printed):
    subscribers, out = printed
    publish = subscribers.publish
    what = "worker on cpu#1 died (signal 9 (SIGKILL)) at 1:52"
    podcast = job(1, "podcast.mp3")
    publish(JobChanged(job=podcast))
    running = start(publish, podcast, "cpu#1")
    # what the engine sends, in its order: the pool's word, the job's, the row's
    publish(WorkerChanged(device="cpu#1", state="died", note="died (signal 9 (SIGKILL))"))
    publish(LogEmitted(level="warning", message=f"podcast.mp3: {what}; resumed", job_id=1))
    publish(WorkerChanged(device="cpu#1", state="died", note=f"{what}; resumed"))
    queued = dataclasses.replace(running, state=JobState.QUEUED, resume_from=112.0)
    publish(JobChanged(job=queued, previous=JobState.RUNNING))
    running = start(publish, queued, "cpu#1")
    screen = out.screen()
    assert [line for line in screen if "died" in line] == [
        f"warning: podcast.mp3: {what}; resumed"
    ], screen
    assert "Resuming podcast.mp3 at 112.0 s" in screen, screen
    assert not any("(2/" in line for line in screen), screen

    # the second death fails the file: said once, though it is both logged and the job's error
    message = f"podcast.mp3: {what}; it killed its worker twice in a row, so it failed"
    publish(WorkerChanged(device="cpu#1", state="died", note="died (signal 9 (SIGKILL))"))
    publish(LogEmitted(level="error", message=message, job_id=1))
    failed = dataclasses.replace(running, state=JobState.FAILED, error=message)
    publish(JobChanged(job=failed, previous=JobState.RUNNING))
    # an idle worker's death costs no job and the engine logs nothing: the printer says it
    publish(WorkerChanged(device="cpu#2", state="died", note="died (signal 11)"))
    screen = out.screen()
    assert screen.count(f"error: {message}") == 1, screen
    assert "warning: worker on cpu#2 died (signal 11)" in screen, screen


def test_worker_events_are_written_as_json(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    subscribers = Subscribers()
    subscribers.add(writer)
    subscribers.publish(
        WorkerChanged(
            device="cuda:1",
            state="busy",
            pid=4242,
            job_id=3,
            models=("whisper:tiny.en",),
            rss_bytes=480_000_000,
            gpu_bytes=None,
            note="",
            at=1.5,
        )
    )
    subscribers.publish(StageProgressed(job_id=3, stage=Stage.TRANSLATE, fraction=0.5, at=2.0))
    writer.close()
    worker, progress = (json.loads(line) for line in path.read_text().splitlines())
    assert worker == {
        "type": "worker",
        "at": 1.5,
        "device": "cuda:1",
        "state": "busy",
        "pid": 4242,
        "job_id": 3,
        "models": ["whisper:tiny.en"],
        "rss_bytes": 480_000_000,
        "gpu_bytes": None,
        "note": "",
    }
    assert progress["device"] is None and progress["stage"] == "translate"
