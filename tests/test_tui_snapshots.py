"""Snapshots of the screens, made stable: a paused engine, a fixed clock, fixed memory samples.

The job list comes from adding the committed clips to a paused engine (ids 1-3, names only
on screen); memory samples with fixed numbers go through the engine's own publish path, the
same one the sampler thread uses. Log times are printed in UTC from the fixed clock.
Update with `pytest tests/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from subq.engine import (
    CONTEXT_NOTE,
    Engine,
    Event,
    GpuSample,
    JobChanged,
    JobState,
    LogEmitted,
    MemorySampled,
    ModelLoaded,
    Settings,
    Stage,
    StageProgressed,
    WorkerChanged,
)
from subq.engine.events import GpuProcess  # only the fixed samples need it; the app never does
from subq.engine.jobs import Removal
from subq.tui.app import SubqApp
from subq.tui.screens.details import DetailsScreen
from subq.tui.screens.help import HelpScreen
from subq.tui.screens.picker import MediaTree, PickerScreen
from subq.tui.widgets.memory_panel import MemoryPanel
from textual.pilot import Pilot
from textual.widgets import Static

FIXED = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
GIB = 1024**3
MIB = 1024**2
CLIPS = ("talk.mp4", "lecture.mkv", "podcast.mp3")


def ram_samples() -> list[MemorySampled]:
    """What the sampler reports on a machine without a GPU, with fixed numbers."""
    note = "no GPU: no NVIDIA driver found"
    return [
        MemorySampled(
            rss_bytes=(300 + 40 * i) * MIB,
            ram_total=32 * GIB,
            ram_available=(22 - i) * GIB,
            gpu_note=note,
            at=FIXED + i,
        )
        for i in range(6)
    ]


def gpu_samples() -> list[MemorySampled]:
    """An H100 shared with another user's process, as NVML and torch would report it."""
    out = []
    for i in range(6):
        gpu = GpuSample(
            index=0,
            name="NVIDIA H100 80GB HBM3",
            uuid=None,
            total=80 * GIB,
            used=(14 + i) * GIB,
            free=(66 - i) * GIB,
            utilization=40 + i,
            this_process=(2 + i) * GIB,
            processes=(GpuProcess(pid=4242, name="python", bytes=12 * GIB),),
            torch_allocated=(1 + i) * GIB,
            torch_reserved=(2 + i) * GIB,
            torch_peak=8 * GIB,
            alloc_retries=0,
            ooms=0,
        )
        out.append(
            MemorySampled(
                rss_bytes=2 * GIB,
                ram_total=512 * GIB,
                ram_available=400 * GIB,
                gpus=(gpu,),
                gpu_note=CONTEXT_NOTE,
                at=FIXED + i,
            )
        )
    return out


@pytest.fixture
def stable(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., SubqApp]]:
    """Build an app over a paused engine with the clips queued; shut it down afterwards."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    engines: list[Engine] = []

    def make(samples: list[MemorySampled] | None = None, **app_kw: object) -> SubqApp:
        engine = Engine(
            Settings(keep_alive=-1), tmp_path / "state.sqlite3", paused=True, sample_memory=False
        )
        engine.start()
        engines.append(engine)
        app = SubqApp(
            engine, clock=lambda: FIXED, start_paths=[str(clips[n]) for n in CLIPS], **app_kw
        )  # type: ignore[arg-type]
        app.snapshot_samples = samples if samples is not None else ram_samples()  # type: ignore[attr-defined]
        return app

    yield make
    for engine in engines:
        engine.shutdown(timeout=30)
        engine.store.close()
    monkeypatch.undo()  # TZ back as it was, then make the time module see it
    time.tzset()


async def settle(pilot: Pilot, *events: Event) -> None:
    """Wait until the queue, the probed durations and the memory samples are all drawn.

    `events` (and the recorded samples) are published once the app has subscribed.
    """
    app: SubqApp = pilot.app  # type: ignore[assignment]
    deadline = time.monotonic() + 30
    while not app.connected and time.monotonic() < deadline:  # run_before starts early
        await pilot.pause(0.05)
    for event in (*events, *app.snapshot_samples):  # type: ignore[attr-defined]
        app.engine._publish(event)  # the path the sampler and engine threads take
    table = app.main.table
    panel = app.main.query_one(MemoryPanel)
    expected = len(app.snapshot_samples)  # type: ignore[attr-defined]

    def drawn() -> bool:
        history = next(iter(panel.history.values()), ())
        return (
            table.row_count == len(CLIPS)
            and len(history) == expected
            and all(str(table.get_cell(str(i), "dur")).strip() for i in range(1, len(CLIPS) + 1))
        )

    while not drawn():
        assert time.monotonic() < deadline, "the app never settled"
        await pilot.pause(0.05)
    await pilot.pause(0.3)


async def with_a_flagged_job(pilot: Pilot) -> None:
    """talk.mp4 (#1, under the cursor) finished with two quality flags and two removals."""
    app: SubqApp = pilot.app  # type: ignore[assignment]
    deadline = time.monotonic() + 30
    while len(app.engine.jobs()) < len(CLIPS) and time.monotonic() < deadline:
        await pilot.pause(0.05)
    talk = next(j for j in app.engine.jobs() if j.name == "talk.mp4")
    srt = Path(talk.path).with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:05,620\nThe weather was warm and sunny.\n")
    done = dataclasses.replace(
        talk,
        state=JobState.DONE,
        duration=9.86,
        language="en",
        outputs=(str(srt),),
        stage_times=(("transcribe", 1.9), ("write", 0.01)),
        flags=("repetitive", "low_logprob"),
        measures=(("no_speech", 0.08), ("avg_logprob", -0.72), ("compression_ratio", 3.04)),
        removed=(
            Removal("repeat", 2.68, 10.14, "It all happens inside their leaves.", 3),
            Removal("invented", 13.0, 14.4, "you"),
        ),
    )
    await settle(pilot, JobChanged(job=done, previous=JobState.QUEUED))
    row = app.main.table.rows_by_id[talk.id]
    while row.job.state != JobState.DONE:
        assert time.monotonic() < deadline + 30, "the finished job never showed"
        await pilot.pause(0.05)
    app.main.table.draw(app.clock())
    await pilot.pause(0.3)


class TestMainScreen:
    """At 80 columns a finished job's flags lead its output cell; from 120 they have a column
    of their own, beside the state."""

    def test_80x24(self, snap_compare, stable) -> None:
        assert snap_compare(stable(), terminal_size=(80, 24), run_before=with_a_flagged_job)

    def test_120x40(self, snap_compare, stable) -> None:
        assert snap_compare(stable(), terminal_size=(120, 40), run_before=with_a_flagged_job)

    def test_160x40(self, snap_compare, stable) -> None:
        assert snap_compare(stable(), terminal_size=(160, 40), run_before=with_a_flagged_job)

    def test_200x60_gpu(self, snap_compare, stable) -> None:
        async def with_model(pilot: Pilot) -> None:
            await settle(
                pilot,
                ModelLoaded(
                    kind="whisper",
                    name="large-v3",
                    device="cuda:0",
                    bytes=3_087_000_000,
                    seconds=9.5,
                    at=FIXED,
                ),
            )

        assert snap_compare(stable(gpu_samples()), terminal_size=(200, 60), run_before=with_model)

    def test_120x40_gpu(self, snap_compare, stable) -> None:
        assert snap_compare(stable(gpu_samples()), terminal_size=(120, 40), run_before=settle)

    def test_80x24_light_theme(self, snap_compare, stable) -> None:
        async def light(pilot: Pilot) -> None:
            pilot.app.theme = "textual-light"
            await settle(pilot)

        assert snap_compare(stable(), terminal_size=(80, 24), run_before=light)


async def with_workers(pilot: Pilot) -> None:
    """Two CPU workers: #1 runs talk.mp4 after its first worker died; #2 was released."""
    app: SubqApp = pilot.app  # type: ignore[assignment]
    deadline = time.monotonic() + 30
    while len(app.engine.jobs()) < len(CLIPS) and time.monotonic() < deadline:
        await pilot.pause(0.05)
    talk = next(j for j in app.engine.jobs() if j.name == "talk.mp4")
    running = dataclasses.replace(talk, state=JobState.RUNNING, stage=Stage.TRANSCRIBE)
    died = "worker on cpu#1 died (signal 9) at 0:07"
    await settle(
        pilot,
        WorkerChanged(device="cpu#1", state="busy", pid=4101, job_id=talk.id),
        JobChanged(job=running, previous=JobState.QUEUED),
        WorkerChanged(device="cpu#1", state="died", pid=4101, note="died (signal 9)"),
        LogEmitted(level="warning", message=f"talk.mp4: {died}; resumed", job_id=talk.id),
        WorkerChanged(device="cpu#1", state="died", pid=4101, note=f"{died}; resumed"),
        WorkerChanged(
            device="cpu#1",
            state="busy",
            pid=4102,
            job_id=talk.id,
            models=("whisper:tiny.en",),
            rss_bytes=480 * MIB,
        ),
        StageProgressed(job_id=talk.id, stage=Stage.TRANSCRIBE, fraction=0.4, device="cpu#1"),
        WorkerChanged(device="cpu#2", state="stopped", pid=4103, note="released 410 MB"),
    )
    # The table redraws rows at most once a second and toasts come with the next flush:
    # wait for the last event to reach both, then a redraw, or the picture is of a moment
    # in between.
    row = app.main.table.rows_by_id[talk.id]

    def final() -> bool:
        noted = row.device == "cpu#1" and "died" in row.worker_note
        return noted and len(app.screen.query("Toast")) >= 1

    while not final():
        assert time.monotonic() < deadline + 30, "the workers' events never all showed"
        await pilot.pause(0.05)
    # the progress once showed as 0% (the row drawn before its StageProgressed took): say it
    # again, as the engine does every window, and give the table a moment to take it
    again = StageProgressed(job_id=talk.id, stage=Stage.TRANSCRIBE, fraction=0.4, device="cpu#1")
    app.engine._publish(again)
    settled = time.monotonic() + 5
    while time.monotonic() < settled and not (row.progress and row.progress.fraction == 0.4):
        await pilot.pause(0.05)
    app.main.table.draw_now(app.clock())  # every row as the events left it, not a second ago
    app.main.table.draw(app.clock())
    await pilot.pause(1.2)


class TestWorkers:
    def test_80x24(self, snap_compare, stable) -> None:
        assert snap_compare(stable(), terminal_size=(80, 24), run_before=with_workers)

    def test_120x40(self, snap_compare, stable) -> None:
        assert snap_compare(stable(), terminal_size=(120, 40), run_before=with_workers)


class TestOtherScreens:
    def test_picker(self, snap_compare, stable, clips, monkeypatch) -> None:
        async def open_picker(pilot: Pilot) -> None:
            await settle(pilot)
            monkeypatch.chdir(clips["talk.mp4"].parent)  # the picker opens on the cwd
            await pilot.press("a")
            screen = pilot.app.screen
            assert isinstance(screen, PickerScreen)
            tree = screen.query_one(MediaTree)
            deadline = time.monotonic() + 30
            while len(tree.root.children) < 5 and time.monotonic() < deadline:
                await pilot.pause(0.05)
            # lecture.mkv, long.mp3, noaudio.mp4, podcast.mp3, talk.mp4: mark two
            await pilot.press("down", "space", "down", "down", "down", "space", "up")
            summary = screen.query_one("#picker-summary", Static)
            while "2 marked" not in str(summary.render()) and time.monotonic() < deadline:
                await pilot.pause(0.05)

        assert snap_compare(stable(), terminal_size=(80, 24), run_before=open_picker)

    def test_help(self, snap_compare, stable) -> None:
        async def open_help(pilot: Pilot) -> None:
            await settle(pilot)
            await pilot.press("question_mark")
            assert isinstance(pilot.app.screen, HelpScreen)

        assert snap_compare(stable(), terminal_size=(80, 24), run_before=open_help)

    def test_help_wide(self, snap_compare, stable) -> None:
        async def open_help(pilot: Pilot) -> None:
            await settle(pilot)
            await pilot.press("question_mark")

        assert snap_compare(stable(), terminal_size=(160, 40), run_before=open_help)

    def test_details(self, snap_compare, stable) -> None:
        """A finished job's flags, with the values behind them, and what was cleaned."""

        async def open_details(pilot: Pilot) -> None:
            await with_a_flagged_job(pilot)
            await pilot.press("enter")
            assert isinstance(pilot.app.screen, DetailsScreen)
            await pilot.pause(0.3)  # the subtitle preview is read by a worker

        assert snap_compare(stable(), terminal_size=(80, 24), run_before=open_details)
