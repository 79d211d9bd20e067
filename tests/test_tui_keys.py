"""Home and End in the job table: the first and the last job, not a sideways scroll.

Real engine, real clips; the engine starts paused so the rows stay where they were added.
Run twice: with the engine in the app's process, and attached to the engine service.
"""

from __future__ import annotations

from subq.tui.app import SubqApp
from test_tui import async_test, names, select, table, wait_until


@async_test
async def test_home_and_end_go_to_the_first_and_last_job(app_engine, clips) -> None:
    engine = app_engine(paused=True)
    paths = [str(clips[n]) for n in ("talk.mp4", "lecture.mkv", "podcast.mp3")]
    app = SubqApp(engine, start_paths=paths)
    async with app.run_test(size=(80, 24)) as pilot:  # narrow: the table could scroll sideways
        await wait_until(pilot, lambda: len(names(app)) == 3, what="three jobs")
        jobs = table(app)
        select(app, "lecture.mkv")

        await pilot.press("end")
        assert names(app)[jobs.cursor_row] == "podcast.mp3"
        await pilot.press("home")
        assert names(app)[jobs.cursor_row] == "talk.mp4"
        assert jobs.scroll_x == 0

        # a job recorded but not drawn yet (rows are added at most once a second) is the last
        engine.add([str(clips["long.mp3"])])
        await wait_until(pilot, lambda: len(jobs.order) == 4, what="long.mp3 recorded")
        await pilot.press("end")
        assert names(app)[jobs.cursor_row] == "long.mp3"
        assert jobs.selected_id == jobs.order[-1]


@async_test
async def test_o_steps_through_the_outputs_and_is_offered_only_with_two(app_engine, clips):
    """The details' `o` was in the footer for a job with one file or none, and did nothing."""
    from subq.engine import Settings
    from subq.tui.screens.details import DetailsScreen
    from textual.widgets import Static

    engine = app_engine(Settings(keep_alive=-1, formats=("srt", "vtt")))
    app = SubqApp(engine, start_paths=[str(clips["talk.mp4"])])
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_until(pilot, lambda: names(app) == ["talk.mp4"], what="the row")
        await pilot.press("enter")  # opened while it runs: no file yet, no `o`
        await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), what="details")
        screen = app.screen
        if len(screen.job.outputs) < 2:
            assert "o" not in screen.active_bindings
        await wait_until(pilot, lambda: len(screen.job.outputs) == 2, 120, "two outputs")
        await wait_until(pilot, lambda: "o" in screen.active_bindings, what="o offered")
        preview = screen.query_one("#details-preview", Static)
        await wait_until(pilot, lambda: "talk.srt" in str(preview.border_title), what="srt")
        await pilot.press("o")
        await wait_until(pilot, lambda: "talk.vtt" in str(preview.border_title), what="vtt")
        assert "WEBVTT" in str(preview.render())
