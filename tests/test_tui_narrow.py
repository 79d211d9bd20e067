"""A failed job's reason is readable at 80x24 (an SSH terminal), not cut to "/".

Real engine and real broken files (no audio stream, 0 bytes): both fail at the probe, so no
model is loaded. The checks read the table as drawn, line by line.
"""

from __future__ import annotations

import asyncio

import pytest
from subq.engine import JobState
from subq.tui.app import SubqApp
from subq.tui.screens.main import MainScreen
from subq.tui.widgets.job_table import JobTable
from test_tui import async_test, on, state_of, table, wait_until


def drawn(jobs: JobTable) -> list[str]:
    """The table's lines as the terminal shows them."""
    return [jobs.render_line(y).text.rstrip() for y in range(jobs.size.height)]


def line_of(jobs: JobTable, name: str) -> str:
    return next(line for line in drawn(jobs) if f" {name} " in line)


@async_test
async def test_failed_reason_is_visible_at_80_columns(app_engine, clips) -> None:
    empty = clips["talk.mp4"].parent / "empty.mp4"
    empty.write_bytes(b"")
    engine = on(app_engine)
    app = SubqApp(engine, start_paths=[str(clips["noaudio.mp4"]), str(empty)])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(
            pilot,
            lambda: (
                state_of(app, "noaudio.mp4") == JobState.FAILED
                and state_of(app, "empty.mp4") == JobState.FAILED
            ),
            what="both failed",
        )
        await pilot.pause(0.3)
        jobs = table(app)
        noaudio, zero = line_of(jobs, "noaudio.mp4"), line_of(jobs, "empty.mp4")
        assert len(noaudio) <= 80
        assert "failed" in noaudio and "no audio stream" in noaudio
        assert "failed" in zero and "empty file (0 bytes)" in zero
        assert str(clips["noaudio.mp4"].parent) not in noaudio  # the row names the file
        header = drawn(jobs)[0]
        assert "dur" not in header and "speed" not in header  # folded to make room

        await pilot.resize_terminal(120, 40)  # wider: every column comes back
        await wait_until(pilot, lambda: not jobs.narrow, what="wide layout")
        await pilot.pause(0.1)
        assert "dur" in drawn(jobs)[0] and "speed" in drawn(jobs)[0]
        assert "no audio stream" in line_of(jobs, "noaudio.mp4")


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (140, 40), (160, 40)])
def test_the_job_table_keeps_its_rows_at_every_size_with_a_long_log(app_engine, clips, size):
    """Before: at 120-159 columns the log panel grew with each line and pushed the job
    table down to two rows, then none. With jobs queued and 200 log lines the table
    keeps most of the screen, the panels stay inside it and do not overlap."""
    import time

    engine = on(app_engine, paused=True)
    engine.add([str(clips["podcast.mp3"]), str(clips["talk.mp4"])])
    app = SubqApp(engine)

    async def run() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: table(app).row_count == 2, what="jobs")
            for i in range(200):
                app.main._log("info", f"line {i}: " + "a long log message " * 4, time.time())
            await pilot.pause(0.5)
            jobs, memory, log = (app.main.query_one(q).region for q in ("#jobs", "#memory", "#log"))
            width, height = size
            assert jobs.height >= height // 2 - 2, (size, jobs)
            for region in (jobs, memory, log):
                assert region.right <= width and region.bottom <= height - 1, (size, region)
            assert not jobs.overlaps(memory) and not jobs.overlaps(log)
            assert not memory.overlaps(log), (size, memory, log)

    asyncio.run(run())


# the first is "slides].mp4" in a folder "lecture [": its path holds "lecture [/slides].mp4"
NAMES = ("slides].mp4", "[Group] Anime - 01 [1080p].mkv", "[@click=app.quit].mp4")


def test_file_names_are_text_in_toasts_titles_and_details(app_engine, clips):
    """Before: a failure toast for a name holding `[/slides]` raised MarkupError and the app
    exited; `[Group] ...` lost its tag; `[@click=app.quit]` in a name became an action."""
    from subq.tui.screens.details import DetailsScreen

    folder = clips["noaudio.mp4"].parent
    paths = []
    (folder / "lecture [").mkdir()
    for name in NAMES:  # no audio stream: each fails at the probe, with a toast
        path = folder / ("lecture [" if name == NAMES[0] else "") / name
        path.write_bytes(clips["noaudio.mp4"].read_bytes())
        paths.append(str(path))
    engine = on(app_engine)
    app = SubqApp(engine, start_paths=paths)

    async def run() -> None:
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_until(
                pilot, lambda: all(state_of(app, n) == JobState.FAILED for n in NAMES), 60, "failed"
            )
            await pilot.pause(1.5)  # the toasts are drawn (a markup error ended the app here)
            toasts = list(app._notifications)
            shown = "\n".join(f"{n.title} {n.message}" for n in toasts)
            assert "lecture [/slides].mp4" in shown and "[Group] Anime" in shown, shown
            # drawn as text: as markup, "[/slides]" is a MarkupError that ends the app
            assert toasts and not any(n.markup for n in toasts)
            assert app.is_running and isinstance(app.screen, MainScreen)
            table(app).move_cursor(row=1)
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), what="details")
            await pilot.pause(0.3)
            summary = str(app.screen.query_one("#details-summary").render())
            assert "[Group] Anime - 01 [1080p].mkv" in summary, summary

    asyncio.run(run())
