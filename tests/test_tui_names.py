"""File names are text everywhere in the app, never markup (issue 23.5).

Before: a failure toast for `lecture [/slides].mp4` raised MarkupError and the app exited
1; `[Group] Anime - 01 [1080p].mkv` showed as ` Anime - 01 [1080p].mkv`; `[@click=app.quit]`
in a name became a clickable action. Real engine, real files with those names (a file name
cannot hold "/", so the first is `slides].mp4` in a folder `lecture [`); every check reads
back what is drawn: cells, rendered lines, toasts, borders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from subq.engine import Engine, Job, JobState, ModelLoaded
from subq.tui.app import SubqApp
from subq.tui.screens.details import DetailsScreen
from subq.tui.screens.main import MainScreen
from subq.tui.screens.picker import MediaTree, PickerScreen
from subq.tui.widgets.formatting import display_path
from subq.tui.widgets.memory_panel import MemoryPanel
from test_tui import async_test, names, on, state_of, status, table, wait_until
from textual.geometry import Region
from textual.pilot import Pilot
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Label, Static

# (folder, file name, the committed clip it is a copy of)
FILES = (
    ("lecture [", "slides].mp4", "talk.mp4"),  # its path holds "lecture [/slides].mp4"
    ("", "[Group] Anime - 01 [1080p].mkv", "lecture.mkv"),
    ("", "[@click=app.quit].mp4", "talk.mp4"),
)
CLICK = "[@click=app.quit].mp4"


def make_files(folder: Path, clips: dict[str, Path] | None = None) -> list[Path]:
    """The three names in `folder`: copies of small clips, or (no clips) non-media bytes."""
    paths = []
    for sub, name, clip in FILES:
        (folder / sub).mkdir(exist_ok=True)
        path = folder / sub / name
        if clips is None:
            path.write_bytes(b"this is not a media file\n" * 40)
        else:
            shutil.copy(clips[clip], path)
        paths.append(path)
    return paths


def strips(widget: Widget) -> list[Strip]:
    """The widget's lines as the terminal shows them (borders included)."""
    return widget.render_lines(Region(0, 0, *widget.outer_size))


def lines(widget: Widget) -> list[str]:
    return [strip.text for strip in strips(widget)]


def actions(*widgets: Widget) -> list[str]:
    """Every click action in what the widgets draw (markup such as `[@click=…]` makes one)."""
    found = []
    for widget in widgets:
        for strip in strips(widget):
            for segment in strip:
                meta = segment.style.meta if segment.style else {}
                if "@click" in meta:
                    found.append(str(meta["@click"]))
    return found


def toasts(app: SubqApp) -> list[Widget]:
    return list(app.screen.query("Toast"))


def toast_text(app: SubqApp) -> str:
    """The toasts on screen, as drawn: title and message."""
    return "\n".join(str(toast.render()) for toast in toasts(app))


def toast_for(app: SubqApp, message: str) -> bool:
    """A toast on screen says exactly `message` (under its title)."""
    return any(str(toast.render()).endswith("\n" + message) for toast in toasts(app))


def job_named(engine: Engine, name: str) -> Job:
    return next(job for job in engine.jobs() if job.name == name)


def still_running(app: SubqApp) -> bool:
    return app.is_running and app.return_code is None


async def open_details(pilot: Pilot, app: SubqApp, name: str) -> DetailsScreen:
    table(app).move_cursor(row=names(app).index(name))
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), what="details")
    await pilot.pause(0.1)
    assert isinstance(app.screen, DetailsScreen)
    return app.screen


@async_test
async def test_broken_files_with_markup_names_fail_as_text(app_engine, tmp_path) -> None:
    """Non-media bytes: each job fails at the probe with a toast naming its path; the app
    stays up, the table and the details say the exact names, nothing in them is clickable."""
    paths = make_files(tmp_path)
    engine = on(app_engine)
    app = SubqApp(engine)
    async with app.run_test(size=(160, 40), notifications=True) as pilot:
        for path in paths:  # one at a time: each failure has its own toast
            engine.add([str(path)])
            await wait_until(
                pilot, lambda p=path: state_of(app, p.name) == JobState.FAILED, what="failed"
            )
            error = job_named(engine, path.name).error or ""
            assert error.startswith(f"{path}: "), error  # the path, "lecture [/slides]…"
            await wait_until(pilot, lambda e=error: toast_for(app, e), 10, "its toast")
            assert still_running(app) and isinstance(app.screen, MainScreen)
        jobs = table(app)
        assert names(app) == [p.name for p in paths]  # the cells: exact names
        drawn = "\n".join(lines(jobs))
        for path in paths:  # a long name may end in "…" in its column: its start is drawn
            assert f" {path.name[:20]}" in drawn, drawn
        assert not actions(jobs, app.main.log_strip, *toasts(app))

        # a click on the name's cell and on its toast runs nothing
        row = names(app).index(CLICK)
        await pilot.click(jobs, offset=(6, row + 1))
        click_toast = next(t for t in toasts(app) if CLICK in str(t.render()))
        await pilot.click(click_toast, offset=(3, 1))
        await pilot.pause(0.3)
        assert still_running(app) and isinstance(app.screen, MainScreen)

        for path in paths:
            job = job_named(engine, path.name)
            screen = await open_details(pilot, app, path.name)
            summary = str(screen.query_one("#details-summary", Static).render())
            assert summary.splitlines()[0] == f"#{job.id} {path.name}", summary
            assert f"path      {display_path(path)}\n" in summary
            assert job.error and str(path) in job.error and job.error in summary
            log = str(screen.query_one("#details-log", Static).render())
            assert job.error in log, log
            assert not actions(*screen.query(Static)), actions(*screen.query(Static))
            await pilot.click("#details-summary", offset=(5, 0))  # on the name
            assert still_running(app)
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)

        # the warning for cancelling a finished job names it exactly
        jobs.move_cursor(row=row)
        await pilot.press("x")
        warning = f"{CLICK} is already failed"
        await wait_until(pilot, lambda: warning in toast_text(app).splitlines(), 10, "warning")
        assert still_running(app)


@async_test
async def test_done_files_with_markup_names_show_their_subtitles(app_engine, clips) -> None:
    """Copies of real clips: the output column and the details' subtitle preview (its
    border names the file) say the exact names."""
    paths = make_files(clips["talk.mp4"].parent, clips)
    engine = on(app_engine)
    app = SubqApp(engine, start_paths=[str(p) for p in paths])
    async with app.run_test(size=(160, 40), notifications=True) as pilot:
        await wait_until(
            pilot,
            lambda: all(state_of(app, p.name) == JobState.DONE for p in paths),
            240,
            "all done",
        )
        await pilot.pause(0.3)
        jobs = table(app)
        assert names(app) == [p.name for p in paths]
        for path in paths:
            srt = path.with_suffix(".srt")
            assert srt.is_file()
            row = names(app).index(path.name)
            row_key = jobs.coordinate_to_cell_key((row, 0)).row_key
            assert str(jobs.get_cell(row_key, "output")).strip() == srt.name

            screen = await open_details(pilot, app, path.name)
            summary = str(screen.query_one("#details-summary", Static).render())
            assert summary.splitlines()[0].endswith(f" {path.name}"), summary
            assert f"output    {display_path(srt)}" in summary, summary
            preview = screen.query_one("#details-preview", Static)
            await wait_until(pilot, lambda p=preview: "-->" in str(p.render()), what="preview")
            await pilot.pause(0.1)
            top = lines(preview)[0]  # the border: "subtitles: <name>.srt"
            assert f"subtitles: {srt.name}" in top, top
            assert not actions(preview)
            await pilot.press("escape")
        assert still_running(app)


@async_test
async def test_the_picker_lists_and_counts_markup_names(app_engine, clips, monkeypatch) -> None:
    """The folder tree's entries and the summary line ("enter adds …") are the names."""
    folder = clips["talk.mp4"].parent
    paths = make_files(folder, clips)
    monkeypatch.chdir(folder)
    engine = on(app_engine, paused=True)
    app = SubqApp(engine)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, PickerScreen), what="picker")
        tree = app.screen.query_one(MediaTree)

        def labels() -> list[str]:
            return [str(n.label) for n in tree.root.children]

        await wait_until(pilot, lambda: CLICK in labels(), what="the folder listing")
        assert {"lecture [", FILES[1][1], CLICK} <= set(labels()), labels()
        drawn = "\n".join(lines(tree))
        assert f"{FILES[1][1]}" in drawn and CLICK in drawn, drawn

        await pilot.press(*"lecture [/")  # the tree follows a typed folder: its root label
        folder_name = paths[0].parent.name  # "lecture ["
        await wait_until(pilot, lambda: str(tree.path) == folder_name, what="the tree follows")
        await wait_until(pilot, lambda: str(tree.root.label) == folder_name, what="its label")
        await wait_until(pilot, lambda: labels() == [paths[0].name], what="its listing")
        assert lines(tree)[1].strip("│ ").endswith(folder_name), lines(tree)
        await pilot.press(*"slides].mp4")
        summary = app.screen.query_one("#picker-summary", Static)
        await wait_until(
            pilot,
            lambda: "enter adds lecture [/slides].mp4: 1 file" in str(summary.render()),
            what="the summary",
        )
        assert not actions(tree, summary)
        await pilot.press("enter")
        await wait_until(pilot, lambda: names(app) == [paths[0].name], what="added")
        assert still_running(app) and isinstance(app.screen, MainScreen)


@async_test
async def test_a_model_given_as_a_path_is_text_in_the_header(app_engine) -> None:
    """A model may be a path: its name is drawn as text in the header and the memory panel."""
    engine = on(app_engine, paused=True)
    app = SubqApp(engine)
    name = "/models/lecture [/slides]/[Group] tiny [@click=app.quit]"
    async with app.run_test(size=(160, 40), notifications=True) as pilot:
        await wait_until(pilot, lambda: app.connected, what="connected")
        app.bridge(ModelLoaded(kind="whisper", name=name, device="cpu", bytes=1, seconds=0.1))
        await wait_until(pilot, lambda: status(app).models != (), what="the model listed")
        await pilot.pause(0.3)
        assert still_running(app)
        header = str(app.main.query_one("#models", Label).render())
        assert header == f"models: whisper {name}", header
        panel = app.main.query_one(MemoryPanel)
        assert f"whisper {name}" in str(panel.query_one("#memory-models", Static).render())
        assert not actions(status(app), panel)
