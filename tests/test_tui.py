"""The app driven by its keys, on a real engine with the real tiny model and the committed clips.

Each test starts its own engine and drives the app through Textual's Pilot, waiting on
conditions (never fixed sleeps). Engines that must not run anything start paused. Tests that
take `app_engine` run twice (issue 26): on an engine in the app's process, and attached to a
real engine service through its socket, key for key the same. The rest are in process by
nature: a quit that pauses the in-process engine (the service's quit is in test_service.py)
and bursts published at the engine's own publish point.
"""

from __future__ import annotations

import asyncio
import functools
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from conftest import DATA
from subq.engine import (
    Engine,
    JobState,
    LogEmitted,
    Settings,
    Stage,
    StageProgressed,
    config_path,
    load_config,
)
from subq.tui.app import SubqApp
from subq.tui.messages import EngineEvents
from subq.tui.screens.details import DetailsScreen
from subq.tui.screens.dialogs import QuitScreen, UnloadScreen
from subq.tui.screens.help import HelpScreen
from subq.tui.screens.main import MainScreen
from subq.tui.screens.picker import MediaTree, PickerScreen, complete_path
from subq.tui.screens.settings import SettingsScreen
from subq.tui.widgets.job_table import JobTable
from subq.tui.widgets.log_strip import LogStrip
from subq.tui.widgets.memory_panel import MemoryPanel
from subq.tui.widgets.status_bar import StatusBar
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

FIXED = 1_800_000_000.0


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (no pytest asyncio plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


async def wait_until(
    pilot: Pilot, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition"
) -> None:
    """Let the app run until `predicate()` holds; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    assert predicate(), f"timed out waiting for {what}"


def table(app: SubqApp) -> JobTable:
    return app.main.table


def state_of(app: SubqApp, name: str) -> JobState | None:
    """The state word in the job's row (None while it has no row)."""
    t = table(app)
    for i in range(t.row_count):
        if str(t.get_cell_at((i, 1))).strip() == name:
            row_key = t.coordinate_to_cell_key((i, 0)).row_key
            return JobState(str(t.get_cell(row_key, "state")).strip())
    return None


def names(app: SubqApp) -> list[str]:
    """File names as the rows show them, top to bottom."""
    t = table(app)
    return [str(t.get_cell_at((i, 1))).strip() for i in range(t.row_count)]


def log_text(app: SubqApp) -> str:
    return "\n".join(line.text for line in app.main.query_one(LogStrip).lines)


def status(app: SubqApp) -> StatusBar:
    return app.main.query_one(StatusBar)


def select(app: SubqApp, name: str) -> None:
    table(app).move_cursor(row=names(app).index(name))


def started(make_engine: Callable[..., Engine], **kw: object) -> Engine:
    # openai-whisper: these tests press keys while long.mp3 runs, and faster-whisper (the CPU
    # default) can finish the whole file before a key lands on a fast machine. One worker:
    # the keys act on one running job at a time (two workers: test_tui_workers).
    engine = make_engine(Settings(backend="whisper", keep_alive=-1, device="cpu"), **kw)
    engine.start()
    return engine


def on(app_engine: Callable[..., Any], paused: bool = False, sample_memory: bool = False) -> Any:
    """`started`'s engine from the app_engine fixture: in this process, or the service."""
    settings = Settings(backend="whisper", keep_alive=-1, device="cpu")
    return app_engine(settings, paused=paused, sample_memory=sample_memory)


# -- adding -----------------------------------------------------------------------------


@async_test
async def test_add_by_typing_a_path_and_a_glob(app_engine, clips, monkeypatch) -> None:
    monkeypatch.chdir(clips["talk.mp4"].parent.parent)
    engine = on(app_engine, paused=True)  # the service's folder is not this one
    app = SubqApp(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, PickerScreen), what="picker")
        await pilot.press(*"media/talk.mp4", "enter")  # typed as it opens: the path has focus
        await wait_until(pilot, lambda: names(app) == ["talk.mp4"], what="talk.mp4 added")
        assert isinstance(app.screen, MainScreen)

        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, PickerScreen), what="picker")
        await pilot.press(*"media/*.mp3", "enter")
        await wait_until(pilot, lambda: len(names(app)) == 3, what="the mp3 files")
        assert sorted(names(app)[1:]) == ["long.mp3", "podcast.mp3"]
        assert [j.name for j in engine.jobs()] == names(app)
        assert all(j.state == JobState.QUEUED for j in engine.jobs())  # paused: nothing ran


@async_test
async def test_add_by_marking_in_the_tree(app_engine, clips, monkeypatch) -> None:
    folder = clips["talk.mp4"].parent
    (folder / "notes.txt").write_text("not media")
    monkeypatch.chdir(folder)
    engine = on(app_engine, paused=True)  # the service's folder is not this one
    app = SubqApp(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, PickerScreen), what="picker")
        tree = app.screen.query_one(MediaTree)
        await pilot.press("down")  # from the path to the tree
        assert tree.has_focus

        def labels() -> list[str]:
            return [str(n.label) for n in tree.root.children]

        await wait_until(pilot, lambda: len(labels()) == 5, what="the folder listing")
        assert "notes.txt" not in labels()  # media only
        await pilot.press("h")
        await wait_until(pilot, lambda: "notes.txt" in labels(), what="all files")
        await pilot.press("h")
        await wait_until(pilot, lambda: "notes.txt" not in labels(), what="media only again")

        # lecture.mkv, long.mp3, noaudio.mp4, podcast.mp3, talk.mp4: mark the 1st and 4th
        tree.move_cursor(tree.root.children[0])
        await pilot.press("space", "down", "down", "space")
        summary = app.screen.query_one("#picker-summary", Static)
        await wait_until(
            pilot,
            lambda: "2 marked: 2 files · 0:17 total" in str(summary.render()),
            what="the count of marked files",
        )
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: sorted(names(app)) == ["lecture.mkv", "podcast.mp3"],
            what="marked files added",
        )
        assert isinstance(app.screen, MainScreen)


def test_picker_completes_paths(clips, monkeypatch) -> None:
    monkeypatch.chdir(clips["talk.mp4"].parent.parent)
    assert complete_path("med") == "media/"
    assert complete_path("media/ta") == "media/talk.mp4"
    assert complete_path("media/l") is None  # lecture.mkv, long.mp3: nothing in common
    assert complete_path("media/lo") == "media/long.mp3"
    assert complete_path("media/*.mp3") is None
    assert complete_path("nothing-here/x") is None


# -- queue control ----------------------------------------------------------------------


@async_test
async def test_pause_and_resume(app_engine, clips) -> None:
    engine = on(app_engine)
    app = SubqApp(engine, start_paths=[str(clips["long.mp3"]), str(clips["talk.mp4"])])
    async with app.run_test(size=(100, 30)) as pilot:
        job = table(app)
        await wait_until(
            pilot, lambda: state_of(app, "long.mp3") == JobState.RUNNING, what="long.mp3 running"
        )
        await pilot.press("p")
        assert status(app).state in ("pausing", "paused")  # shown at once, before the engine
        await wait_until(
            pilot, lambda: state_of(app, "long.mp3") == JobState.PAUSED, 120, "long.mp3 paused"
        )
        await wait_until(pilot, lambda: status(app).state == "paused", what="header paused")
        # new rows are drawn at most once a second: long.mp3 can pause before talk's row shows
        await wait_until(
            pilot, lambda: state_of(app, "talk.mp4") == JobState.QUEUED, what="talk.mp4 queued"
        )
        paused_at = job.job(job.order[0]).resume_from  # type: ignore[union-attr]

        await pilot.press("p")
        assert status(app).state == "running"
        await wait_until(
            pilot, lambda: state_of(app, "long.mp3") == JobState.RUNNING, what="resumed"
        )
        await pilot.press("p")
        await wait_until(pilot, lambda: status(app).state == "paused", 120, "paused again")
        assert engine.paused
        assert paused_at >= 0


@async_test
async def test_move_keys(app_engine, clips) -> None:
    engine = on(app_engine, paused=True)
    paths = [str(clips[n]) for n in ("talk.mp4", "lecture.mkv", "podcast.mp3")]
    app = SubqApp(engine, start_paths=paths)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(names(app)) == 3, what="three jobs")

        async def check(keys: tuple[str, ...], expected: list[str]) -> None:
            await pilot.press(*keys)
            assert names(app) == expected  # the row moved at once
            assert names(app)[table(app).cursor_row] == expected_selected
            await wait_until(
                pilot,
                lambda: [j.name for j in engine.jobs()] == expected,
                what=f"engine order {expected}",
            )

        select(app, "podcast.mp3")
        expected_selected = "podcast.mp3"
        await check(("K",), ["talk.mp4", "podcast.mp3", "lecture.mkv"])
        await check(("t",), ["podcast.mp3", "talk.mp4", "lecture.mkv"])
        await check(("J",), ["talk.mp4", "podcast.mp3", "lecture.mkv"])
        await check(("b",), ["talk.mp4", "lecture.mkv", "podcast.mp3"])
        await check(("shift+up",), ["talk.mp4", "podcast.mp3", "lecture.mkv"])
        await check(("shift+down",), ["talk.mp4", "lecture.mkv", "podcast.mp3"])


@async_test
async def test_cancel_remove_retry_clear(app_engine, clips) -> None:
    engine = on(app_engine, paused=True)
    paths = [str(clips[n]) for n in ("talk.mp4", "lecture.mkv", "podcast.mp3")]
    app = SubqApp(engine, start_paths=paths)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: len(names(app)) == 3, what="three jobs")
        select(app, "lecture.mkv")
        await pilot.press("x")
        await wait_until(
            pilot, lambda: state_of(app, "lecture.mkv") == JobState.CANCELLED, what="cancelled"
        )
        await pilot.press("r")
        await wait_until(
            pilot, lambda: state_of(app, "lecture.mkv") == JobState.QUEUED, what="queued again"
        )
        await pilot.press("r")  # not finished: refused with a warning, nothing changes
        await pilot.press("x")
        await wait_until(
            pilot,
            lambda: state_of(app, "lecture.mkv") == JobState.CANCELLED,
            what="cancelled again",
        )
        await pilot.press("c")
        await wait_until(
            pilot, lambda: names(app) == ["talk.mp4", "podcast.mp3"], what="finished cleared"
        )
        select(app, "podcast.mp3")
        await pilot.press("delete")
        await wait_until(pilot, lambda: names(app) == ["talk.mp4"], what="removed")
        assert [j.name for j in engine.jobs()] == ["talk.mp4"]


@async_test
async def test_cancel_running_job_then_retry_it(app_engine, clips) -> None:
    engine = on(app_engine)
    app = SubqApp(engine, start_paths=[str(clips["long.mp3"])])
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(
            pilot, lambda: state_of(app, "long.mp3") == JobState.RUNNING, what="running"
        )
        await pilot.press("x")
        cell = str(table(app).get_cell("1", "stage"))  # shown until the engine acts on it
        assert "cancelling" in cell or state_of(app, "long.mp3") == JobState.CANCELLED
        await wait_until(
            pilot, lambda: state_of(app, "long.mp3") == JobState.CANCELLED, 120, "cancelled"
        )
        await pilot.press("r")
        await wait_until(
            pilot,
            lambda: state_of(app, "long.mp3") in (JobState.QUEUED, JobState.RUNNING),
            what="retried",
        )
        await pilot.press("p")
        await wait_until(pilot, lambda: status(app).state == "paused", 120, "paused")


@async_test
async def test_failed_job_shows_its_error(app_engine, clips) -> None:
    engine = on(app_engine)
    app = SubqApp(engine, start_paths=[str(clips["noaudio.mp4"])])
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_until(
            pilot, lambda: state_of(app, "noaudio.mp4") == JobState.FAILED, what="failed"
        )
        assert "failed" in str(table(app).get_cell("1", "state"))  # the word, not a colour
        assert "no audio stream" in str(table(app).get_cell("1", "output"))
        assert "no audio stream" in log_text(app)
        assert isinstance(app.screen, MainScreen)


# -- models and memory ------------------------------------------------------------------


@async_test
async def test_unload_whisper(app_engine, clips) -> None:
    engine = on(app_engine, sample_memory=True)  # the real memory sampler feeds the panel
    app = SubqApp(engine, start_paths=[str(clips["talk.mp4"])])
    async with app.run_test(size=(120, 40)) as pilot:
        panel = app.main.query_one(MemoryPanel)
        await wait_until(pilot, lambda: state_of(app, "talk.mp4") == JobState.DONE, 120, "done")
        await wait_until(
            pilot,
            lambda: any(m.kind == "whisper" for m in panel.models.values()),
            what="whisper listed",
        )
        assert "whisper" in " ".join(status(app).models)
        await wait_until(pilot, lambda: panel.latest is not None, what="a memory sample")
        assert panel.latest is not None and panel.latest.rss_bytes > 0

        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, UnloadScreen), what="dialog")
        await pilot.press("w")
        await wait_until(pilot, lambda: not panel.models, what="whisper unloaded")
        assert "unloaded whisper model tiny.en" in log_text(app)
        assert "RAM returned" in log_text(app)
        await wait_until(pilot, lambda: status(app).models == (), what="header: no models")


@async_test
async def test_release_gpu_while_running(app_engine, clips) -> None:
    engine = on(app_engine)
    app = SubqApp(engine, start_paths=[str(clips["long.mp3"])])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(
            pilot,
            lambda: (
                table(app).row_count == 1
                and str(table(app).get_cell("1", "stage")).strip() == Stage.TRANSCRIBE.value
            ),
            120,
            "transcribing",
        )
        await pilot.press("R")
        shown = status(app)  # at once; "paused" only if the engine was already at a safe point
        assert shown.state in ("pausing", "paused")
        if shown.state == "pausing":
            assert shown.pending == ("translation", "whisper")  # "unload pending"
        await wait_until(
            pilot,
            lambda: (
                status(app).state == "paused" and not status(app).pending and not status(app).models
            ),
            120,
            "paused and unloaded",
        )
        assert state_of(app, "long.mp3") == JobState.PAUSED
        assert "unloaded whisper model" in log_text(app)
        assert engine.loaded_models == ()


# -- quitting and coming back -----------------------------------------------------------


@async_test
async def test_quit_pauses_and_the_queue_comes_back(make_engine, clips, tmp_path) -> None:
    state = tmp_path / "quit.sqlite3"
    # openai-whisper: faster-whisper can finish the whole 69 s file before the keys arrive
    engine = make_engine(
        Settings(backend="whisper", keep_alive=-1), state=state, sample_memory=False
    )
    engine.start()
    # story.mp3 (3 min, 7 windows): long.mp3's 3 windows could finish before the keys landed
    story = shutil.copy(DATA / "story.mp3", clips["talk.mp4"].parent / "story.mp3")
    paths = [str(story), str(clips["talk.mp4"])]
    app = SubqApp(engine, start_paths=paths)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(
            pilot, lambda: state_of(app, "story.mp3") == JobState.RUNNING, what="running"
        )
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitScreen), what="question")
        await pilot.press("c")  # cancel: stay
        assert isinstance(app.screen, MainScreen) and not app.quitting
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitScreen), what="question")
        await pilot.press("p")
        await wait_until(pilot, lambda: app.return_code is not None, 120, "exit")
    assert app.return_code == 0
    engine.shutdown(timeout=120)  # as run_app does; a CPU window can outlast the app's wait
    assert engine.state == "stopped"
    kept = [(j.id, j.name) for j in engine.jobs()]

    again = make_engine(Settings(keep_alive=-1), state=state, paused=True, sample_memory=False)
    again.start()
    assert [(j.id, j.name) for j in again.jobs()] == kept
    story_job = again.jobs()[0]
    assert story_job.state in (JobState.INTERRUPTED, JobState.PAUSED)
    app2 = SubqApp(again)
    async with app2.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: names(app2) == ["story.mp3", "talk.mp4"], what="rows")
        assert status(app2).state == "paused"
        await wait_until(
            pilot,
            lambda: "p resumes" in str(app2.main.query_one("#counts", Static).render()),
            what="resume hint",
        )
        await pilot.press("q")  # paused: nothing in progress, so no question
        await wait_until(pilot, lambda: app2.return_code is not None, 60, "exit")


# -- other screens ----------------------------------------------------------------------


@async_test
async def test_details_show_settings_log_and_subtitles(app_engine, clips) -> None:
    engine = on(app_engine)
    app = SubqApp(engine, start_paths=[str(clips["talk.mp4"])])
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: state_of(app, "talk.mp4") == JobState.DONE, 120, "done")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), what="details")
        screen = app.screen
        preview = screen.query_one("#details-preview", Static)
        await wait_until(pilot, lambda: "-->" in str(preview.render()), what="srt preview")
        assert "weather" in str(preview.render()).lower()
        summary = str(screen.query_one("#details-summary", Static).render())
        assert "state     done" in summary and "talk.srt" in summary and "transcribe" in summary
        assert "running → done" in str(screen.query_one("#details-log", Static).render())
        assert "tiny.en" in str(screen.query_one("#details-settings", Static).render())
        assert "o" not in screen.active_bindings  # one file: no next one to show
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


@async_test
async def test_settings_validate_save_and_apply(app_engine) -> None:
    engine = app_engine(Settings(keep_alive=-1), paused=True)  # backend auto: the ASR batch
    # size below needs a batching backend
    app = SubqApp(engine)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SettingsScreen), what="settings")
        screen = app.screen
        model = screen.query_one("#model", Input)
        assert app.focused is model  # focus where the form starts, not nowhere
        other = screen.query_one("#language", Input)
        assert model.styles.background != other.styles.background  # and plain to see
        error = screen.query_one("#settings-error", Static)
        screen.query_one("#language").focus()
        await pilot.press(*"de")  # tiny.en is English-only: Settings.validate says so
        await pilot.press("ctrl+s")
        assert "English-only" in str(error.render())
        assert isinstance(app.screen, SettingsScreen)

        await pilot.press("backspace", "backspace")
        screen.query_one("#beam_size").focus()
        await pilot.press(*"two", "ctrl+s")
        assert "whole number" in str(error.render())
        await pilot.press("backspace", "backspace", "backspace", "3")
        screen.query_one("#asr_batch_size").focus()
        await pilot.press("end", "backspace", *"x", "ctrl+s")
        assert "ASR batch" in str(error.render())
        await pilot.press("backspace", "4")
        screen.query_one("#fill_gaps", Select).value = False  # skipped speech: leave empty
        screen.query_one("#oom_fallback", Select).value = "cpu"
        screen.query_one("#worker_timeout", Input).value = "soon"
        await pilot.press("ctrl+s")
        assert "worker timeout" in str(error.render())
        screen.query_one("#worker_timeout", Input).value = "60"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), what="saved")
        await wait_until(pilot, lambda: engine.settings.beam_size == 3, what="applied")
        assert engine.settings.fill_gaps is False
    assert config_path().exists()
    assert load_config().beam_size == 3 and load_config().asr_batch_size == 4
    assert load_config().fill_gaps is False and load_config().worker_timeout == 60
    assert load_config().oom_fallback == "cpu"


@async_test
async def test_help_lists_every_key_and_palette_runs_actions(app_engine) -> None:
    engine = on(app_engine)
    app = SubqApp(engine)
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = "\n".join(str(s.render()) for s in app.screen.query(".help-section"))
        for key in (
            "a",
            "p",
            "K",
            "J",
            "shift+↑",
            "t",
            "b",
            "x",
            "del",
            "r",
            "c",
            "u",
            "R",
            "s",
            "?",
            "q",
            "^p",
            "space",
            "esc",
        ):
            assert key in text, key
        # the quit dialog this app opens: leave-or-stop for a service, pause for its own engine
        if app.detached:
            assert "quit dialog: l / s / c" in text
            assert "leave it running / stop the batch / cancel" in text
        else:
            assert "quit dialog: p / c" in text and "pause and quit / cancel" in text
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)

        await pilot.press("ctrl+p")
        await pilot.press(*"Pause / resume")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: engine.paused, what="paused from the palette")


# -- the event path ---------------------------------------------------------------------


@async_test
async def test_progress_is_coalesced_not_posted(make_engine, clips) -> None:
    """In process only: the burst is published where the engine's threads publish (a
    service's events reach the app through the same subscriber call, after its socket)."""
    engine = started(make_engine, paused=True, sample_memory=False)
    seen: list[object] = []
    app = SubqApp(engine, clock=lambda: FIXED, start_paths=[str(clips["talk.mp4"])])
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await wait_until(pilot, lambda: names(app) == ["talk.mp4"], what="a job")
        applied: list[object] = []  # what came through the in-order event path
        in_order = app.main.apply
        app.main.apply = lambda event, now: (applied.append(event), in_order(event, now))  # type: ignore[method-assign]
        seen.clear()
        job = engine.jobs()[0]
        running = job.moved_to(JobState.RUNNING, stage=Stage.TRANSCRIBE)
        table(app).upsert(running, time.time(), FIXED)  # as if the engine had started it
        for i in range(1, 501):  # a burst, as from a fast GPU: one flush draws the last
            engine._publish(
                StageProgressed(
                    job_id=job.id,
                    stage=Stage.TRANSCRIBE,
                    fraction=i / 500,
                    speed=12.5,
                    eta=0.0,
                    elapsed=4.0,
                )
            )
        engine._publish(LogEmitted(level="warning", message="a warning", job_id=job.id))
        await wait_until(
            pilot,
            lambda: "100%" in str(table(app).get_cell("1", "progress")),
            what="the last progress drawn",
        )
        assert "12.5x" in str(table(app).get_cell("1", "speed"))
        assert not any(isinstance(e, StageProgressed) for e in applied)
        assert any(isinstance(e, LogEmitted) for e in applied)
        # one wake-up message stands for a backlog: 501 events never make 501 messages
        assert 1 <= sum(isinstance(m, EngineEvents) for m in seen) < 10
        assert "a warning" in log_text(app)


@async_test
async def test_hundreds_of_jobs_stay_responsive(app_engine, clips) -> None:
    """300 files added in one order (a big folder): rows appear in batches, not one message
    per event, and keys still act at once; in process and through the service's socket."""
    folder = clips["talk.mp4"].parent / "season"
    folder.mkdir()
    for i in range(1, 301):  # links: 300 files without 300 copies
        os.link(clips["talk.mp4"], folder / f"part-{i:03d}.mp4")
    engine = on(app_engine, paused=True)
    app = SubqApp(engine, clock=lambda: FIXED)
    seen: list[object] = []
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await wait_until(pilot, lambda: app.connected, what="connected")
        started_at = time.monotonic()
        engine.add([str(folder)])
        await wait_until(pilot, lambda: table(app).row_count == 300, 30, "300 rows")
        assert time.monotonic() - started_at < 20
        assert names(app)[:2] == ["part-001.mp4", "part-002.mp4"]
        assert sum(isinstance(m, EngineEvents) for m in seen) < 30  # not one message per event
        table(app).move_cursor(row=299)
        await pilot.press("t")
        assert names(app)[0] == "part-300.mp4"  # moved at once, before any engine answer
        assert table(app).cursor_row == 0


# -- signals: SSH dropped ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_signal_checkpoints_and_exits_within_two_seconds(sig, clips, tmp_path) -> None:
    """The real `subq` under a pseudo-terminal: a signal mid-transcription exits in < 2 s."""
    from subq.engine.store import Store

    state = tmp_path / "sig.sqlite3"
    master, slave = pty.openpty()
    import fcntl
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "subq.tui.cli",
            "--here",
            "--state",
            str(state),
            str(clips["long.mp3"]),
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        deadline = time.monotonic() + 90
        running = False
        while time.monotonic() < deadline and not running:
            _read_all(master)
            if state.exists():
                store = Store(state)
                try:
                    jobs = store.jobs()
                finally:
                    store.close()
                running = bool(jobs) and jobs[0].stage == Stage.TRANSCRIBE
            time.sleep(0.1)
        assert running, "subq never started transcribing"
        sent = time.monotonic()
        proc.send_signal(sig)
        while proc.poll() is None and time.monotonic() - sent < 5:
            _read_all(master)
            time.sleep(0.02)
        took = time.monotonic() - sent
        assert proc.returncode == 128 + sig, proc.returncode
        assert took < 2.0, f"exit took {took:.2f} s"
        store = Store(state)
        try:
            job = store.jobs()[0]
        finally:
            store.close()
        assert job.state in (JobState.INTERRUPTED, JobState.PAUSED)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def _read_all(fd: int) -> None:
    """Keep the pty drained so the app never blocks writing to it."""
    import select

    while select.select([fd], [], [], 0)[0]:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return
