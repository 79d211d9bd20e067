"""Workers in the app: the device of a running job, a row per worker, a death, a Release.

A real app over a real (paused) engine with the committed clips queued. The worker events are
the engine's own event objects, published through the engine's subscribers (the path its
threads take), because what is tested is what the screen makes of them, not the workers
(tests/test_worker.py runs those). The checks read the widgets as drawn, line by line.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
from subq.engine import (
    Engine,
    JobChanged,
    JobState,
    LogEmitted,
    ModelLoaded,
    Settings,
    Stage,
    StageProgressed,
    WorkerChanged,
)
from subq.tui.app import SubqApp
from test_tui import async_test, log_text, status, table, wait_until
from textual.pilot import Pilot
from textual.widget import Widget

MB = 1024**2
CLIPS = ("talk.mp4", "lecture.mkv", "podcast.mp3")


@pytest.fixture
def app(clips, tmp_path) -> Iterator[SubqApp]:
    engine = Engine(
        Settings(keep_alive=-1), tmp_path / "state.sqlite3", paused=True, sample_memory=False
    )
    engine.start()
    yield SubqApp(engine, start_paths=[str(clips[n]) for n in CLIPS])
    engine.shutdown(timeout=30)
    engine.store.close()


def drawn(widget: Widget) -> list[str]:
    """The widget's lines as the terminal shows them."""
    return [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]


def row_of(app: SubqApp, name: str) -> str:
    return next(line for line in drawn(table(app)) if f" {name} " in line)


def panel(app: SubqApp) -> str:
    """The memory panel's worker rows as drawn."""
    return "\n".join(drawn(app.main.memory.workers_text))


async def ready(pilot: Pilot) -> SubqApp:
    app: SubqApp = pilot.app  # type: ignore[assignment]
    await wait_until(pilot, lambda: app.connected and table(app).row_count == 3, what="queue")
    return app


def publish(app: SubqApp, *events: object) -> None:
    for event in events:
        app.engine._publish(event)  # type: ignore[arg-type]


def running(app: SubqApp, job_id: int, device: str) -> list[object]:
    """What the engine publishes when a worker on `device` starts job `job_id`."""
    job = next(j for j in app.engine.jobs() if j.id == job_id)
    now = time.time()
    return [
        WorkerChanged(device=device, state="busy", pid=4000 + job_id, job_id=job_id, at=now),
        JobChanged(
            job=dataclasses.replace(job, state=JobState.RUNNING, stage=Stage.TRANSCRIBE),
            previous=JobState.QUEUED,
            at=now,
        ),
        StageProgressed(
            job_id=job_id, stage=Stage.TRANSCRIBE, fraction=0.4, device=device, at=now + 0.01
        ),
    ]


@async_test
async def test_a_running_job_names_its_device_at_80_and_120_columns(app) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        publish(app, *running(app, 1, "cpu#1"), *running(app, 3, "cpu#2"))
        await wait_until(pilot, lambda: "on cpu#2" in row_of(app, "podcast.mp3"), what="device")
        assert "on cpu#1" in row_of(app, "talk.mp4")
        assert "on cpu" not in row_of(app, "lecture.mkv")  # queued: no device
        assert all(len(line) <= 80 for line in drawn(table(app)))

        await pilot.resize_terminal(120, 40)
        await wait_until(pilot, lambda: not table(app).narrow, what="wide layout")
        await pilot.pause(0.3)
        assert "running" in row_of(app, "talk.mp4") and "on cpu#1" in row_of(app, "talk.mp4")
        assert "speed" in drawn(table(app))[0]  # the wide layout is unchanged


@async_test
async def test_two_devices_have_a_row_each_in_the_memory_panel(app) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        assert "workers" not in panel(app)  # nothing reported: no worker rows
        publish(
            app,
            WorkerChanged(
                device="cuda:0",
                state="busy",
                pid=4001,
                job_id=1,
                models=("whisper:large-v3",),
                rss_bytes=900 * MB,
                gpu_bytes=3100 * MB,
            ),
            WorkerChanged(device="cuda:1", state="idle", pid=4002, rss_bytes=400 * MB),
        )
        await wait_until(pilot, lambda: "cuda:1" in panel(app), what="worker rows")
        shown = panel(app)
        assert "cuda:0 busy #1 · RSS 900.0 MB · GPU 3.0 GB\n   whisper large-v3" in shown, shown
        assert "cuda:1 idle · RSS 400.0 MB · GPU n/a" in shown, shown

        await pilot.resize_terminal(80, 24)  # compact: still one line per worker
        await wait_until(pilot, lambda: app.main.memory.compact, what="compact panel")
        await pilot.pause(0.2)
        lines = drawn(app.main.memory.workers_text)
        assert any(line.lstrip().startswith("cuda:0 busy #1") for line in lines), lines
        assert any(line.lstrip().startswith("cuda:1 idle") for line in lines), lines


@async_test
async def test_one_model_in_two_workers_is_named_once_and_sized_in_each_row(app) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        events = []
        for device, pid in (("cpu", 4001), ("cpu#2", 4002)):
            events += [
                ModelLoaded(
                    kind="whisper", name="tiny.en", device=device, bytes=80 * MB, seconds=0.3
                ),
                WorkerChanged(device=device, state="idle", pid=pid, models=("whisper:tiny.en",)),
            ]
        publish(app, *events)
        await wait_until(pilot, lambda: "cpu#2" in panel(app), what="worker rows")
        await wait_until(pilot, lambda: status(app).models != (), what="header models")
        assert status(app).models == ("whisper:tiny.en ×2",)
        shown = panel(app)
        assert shown.count("whisper tiny.en 80.0 MB") == 2, shown  # each worker's footprint
        assert not app.main.memory.models_text.display  # no second list of the same models


@async_test
async def test_a_worker_that_died_is_told_once_in_its_row_the_job_and_the_log(app) -> None:
    what = "worker on cpu#1 died (signal 9 (SIGKILL)) at 1:52"
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        publish(app, *running(app, 3, "cpu#1"))
        job = next(j for j in app.engine.jobs() if j.id == 3)
        requeued = dataclasses.replace(job, state=JobState.QUEUED, resume_from=112.0)
        publish(  # what the engine sends, in its order: the pool's word, the job's, the row's
            app,
            WorkerChanged(device="cpu#1", state="died", note="died (signal 9 (SIGKILL))"),
            LogEmitted(level="warning", message=f"podcast.mp3: {what}; resumed", job_id=3),
            WorkerChanged(device="cpu#1", state="died", note=f"{what}; resumed"),
            JobChanged(job=requeued, previous=JobState.RUNNING),
            WorkerChanged(device="cpu#1", state="starting", pid=4100),
            *running(app, 3, "cpu#1"),
        )
        await wait_until(pilot, lambda: "resumed" in panel(app), what="the note")
        assert "cpu#1 busy #3" in panel(app)  # the new worker, with the last note under it
        # (the output column may run off the right edge at 120 columns: read its start)
        await wait_until(pilot, lambda: "died" in row_of(app, "podcast.mp3"), what="row")
        assert "running" in row_of(app, "podcast.mp3")
        assert "on cpu#1 · worker on cpu#1 died" in row_of(app, "podcast.mp3")
        assert table(app).rows_by_id[3].worker_note == f"{what}; resumed"
        assert log_text(app).count("died") == 1, log_text(app)

        # an idle worker that dies costs no job, and the engine logs nothing: the app says it
        publish(app, WorkerChanged(device="cpu#2", state="died", note="died (signal 11)"))
        await wait_until(pilot, lambda: "cpu#2 died" in log_text(app), what="idle death")
        assert "worker on cpu#2 died (signal 11)" in log_text(app)
        assert "died" not in row_of(app, "talk.mp4")


@async_test
async def test_release_leaves_a_row_saying_the_worker_is_gone(app) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        publish(
            app,
            WorkerChanged(device="cpu", state="idle", pid=4001, models=("whisper:tiny.en",)),
            WorkerChanged(device="cpu", state="stopped", note="released 480 MB"),
        )
        await wait_until(pilot, lambda: "no worker" in panel(app), what="stopped row")
        assert "cpu: no worker (released 480 MB)" in panel(app), panel(app)
        assert "tiny.en" not in panel(app).split("no worker")[0].splitlines()[-1]


@async_test
async def test_a_new_worker_does_not_keep_the_last_ones_note(app) -> None:
    """Before: a worker row kept "unloaded its last model" after a new worker had started
    and loaded a model again."""
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        publish(
            app,
            WorkerChanged(device="cpu", state="idle", pid=4001, models=("whisper:tiny.en",)),
            WorkerChanged(device="cpu", state="stopped", pid=4001, note="unloaded its last model"),
            WorkerChanged(device="cpu", state="starting", pid=4002),
            WorkerChanged(device="cpu", state="idle", pid=4002, models=("whisper:tiny.en",)),
        )
        await wait_until(pilot, lambda: "cpu idle" in panel(app), what="the new worker")
        assert "unloaded its last model" not in panel(app), panel(app)


@async_test
async def test_release_on_a_machine_without_a_gpu_is_one_short_toast(app) -> None:
    """Before: at 80x24 Release stacked three toasts (its own and one per unloaded model)
    over half the screen, titled "Release GPU" on a machine with no GPU."""
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("R")
        await pilot.pause(0.5)
        titles = [n.title for n in app._notifications]
        assert titles == ["Release"], titles


@async_test
async def test_w_pauses_one_worker_from_its_row_and_the_other_goes_on(app_engine, clips):
    """Per-device control: w lists the workers; p on the highlighted row pauses that worker
    alone (its job goes back to the queue and finishes on the other one), p again resumes."""
    from subq.tui.screens.workers import WorkersScreen

    engine = app_engine(Settings(keep_alive=-1, device="cpu,cpu"))
    app = SubqApp(engine, start_paths=[str(clips["long.mp3"]), str(clips["podcast.mp3"])])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "cpu busy" in panel(app), 120, "a busy worker")
        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkersScreen), what="the list")
        assert [entry for entry, _ in app.screen.rows][:1] == ["cpu"]
        await pilot.press("p")  # the first row: cpu
        await wait_until(pilot, lambda: "cpu paused" in panel(app), 120, "cpu paused")
        await wait_until(
            pilot,
            lambda: all(j.state == JobState.DONE for j in engine.jobs()),
            240,
            "both files done on the other worker",
        )
        assert "cpu paused" in panel(app)
        await pilot.press("w")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkersScreen), what="the list")
        await pilot.press("p")
        await wait_until(pilot, lambda: "cpu paused" not in panel(app), 60, "cpu resumed")
