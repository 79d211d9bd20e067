"""One job in full: file, settings, stage timings, error and notes, its log, its subtitles.

The subtitle preview reads the written file with aiofiles in an async worker, so a slow or
network-mounted output folder never stalls the screen. The screen follows the job live: the
app hands it every engine event while it is on top.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import aiofiles
from rich.text import Text
from subq.engine import (
    Job,
    JobState,
    Settings,
    cleanup_summary,
    flag_notes,
    removal_line,
)
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..widgets.formatting import display_path, short_duration

PREVIEW_LINES = 40


class DetailsScreen(Screen[None]):
    """Everything known about one job; escape goes back to the queue."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="details_back"),
        Binding("o", "next_output", "Next output", id="details_output"),
    ]

    def __init__(self, job: Job, log: list[str], probed: float | None = None) -> None:
        """`probed`: the duration the UI read, for a job the engine has not run yet."""
        super().__init__()
        self.probed = probed
        self.job = job
        self.log_lines = log
        self.output_index = 0
        self._previewed: tuple[str, float] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-body"):
            yield Static(id="details-summary")
            yield Static(id="details-log", classes="details-section")
            yield Static(
                "no subtitles written yet", id="details-preview", classes="details-section"
            )
            yield Static(id="details-settings", classes="details-section")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#details-settings").border_title = "settings"
        self.query_one("#details-log").border_title = "log"
        self.query_one("#details-preview").border_title = "subtitles"
        self.show(self.job, self.log_lines)

    def show(self, job: Job, log: list[str]) -> None:
        """Redraw for a newer snapshot of the job (called on each engine event)."""
        more_outputs = len(job.outputs) != len(self.job.outputs)
        self.job, self.log_lines = job, log
        if more_outputs:
            self.refresh_bindings()  # `o` appears with a second file
        self.sub_title = job.name
        self.query_one("#details-summary", Static).update(_summary(job, self.probed))
        self.query_one("#details-settings", Static).update(_settings(job.settings))
        self.query_one("#details-log", Static).update(
            Text("\n".join(log[-200:]) if log else "nothing logged for this job in this session")
        )
        if job.outputs:
            self.load_preview(job.outputs[self.output_index % len(job.outputs)])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`o` is offered only where there is a next file to show."""
        return len(self.job.outputs) > 1 if action == "next_output" else True

    def action_next_output(self) -> None:
        if self.job.outputs:
            self.output_index += 1
            self._previewed = None
            self.load_preview(self.job.outputs[self.output_index % len(self.job.outputs)])

    @work(exclusive=True, group="preview")
    async def load_preview(self, path: str) -> None:
        """Read the first lines of a subtitle file with aiofiles, off the event loop."""
        preview = self.query_one("#details-preview", Static)
        try:
            mtime = Path(path).stat().st_mtime
            if self._previewed == (path, mtime):
                return
            lines: list[str] = []
            async with aiofiles.open(path, encoding="utf-8", errors="replace") as f:
                async for line in f:
                    lines.append(line.rstrip("\n"))
                    if len(lines) >= PREVIEW_LINES:
                        lines.append("…")
                        break
        except OSError as exc:
            preview.update(Text(f"{display_path(path)}: cannot read: {exc.strerror or exc}"))
            return
        self._previewed = (path, mtime)
        count = len(self.job.outputs)
        more = f" (o: next of {count})" if count > 1 else ""
        # Text, not a str: a str title is markup, and escape() leaves "[Group]" a tag
        preview.border_title = Text.assemble("subtitles: ", Path(path).name, more)
        preview.update(Text("\n".join(lines)))


def _summary(job: Job, probed: float | None) -> Text:
    text = Text()
    text.append(f"#{job.id} {job.name}\n", style="bold")
    text.append(f"path      {display_path(job.path)}\n")
    stage = f" ({job.stage.value})" if job.stage else ""
    text.append(f"state     {job.state.value}{stage}\n")
    duration = job.duration if job.duration is not None else probed
    text.append(f"duration  {short_duration(duration) or 'unknown (not readable media?)'}\n")
    if job.language:
        how = "as given" if job.settings.language else "detected"
        if job.language_probability is not None and not job.settings.language:
            how = f"detected, {job.language_probability:.0%} sure"
        text.append(f"language  {job.language} ({how})\n")
    if job.stage_times:
        times = ", ".join(f"{k} {v:.1f} s" for k, v in job.stage_times)
        total = sum(v for _k, v in job.stage_times)
        text.append(f"timings   {times} (total {total:.1f} s)\n")
    if job.resume_from:
        text.append(f"resume    from {short_duration(job.resume_from)} (checkpoint kept)\n")
    if job.error:
        text.append("error     ")
        text.append(job.error + "\n", style="bold")
    if job.state == JobState.DONE:
        for note in flag_notes(job.flags, job.measures):
            text.append("check     ")
            text.append(note + "\n", style="bold")
    if job.removed:
        text.append(f"cleaned   {cleanup_summary(job.removed)}\n")
        for row in job.removed:
            text.append(f"removed   {removal_line(row)}\n")
    for note in job.notes:
        text.append(f"note      {note}\n")
    for out in job.outputs:
        text.append(f"output    {display_path(out)}\n")
    text.rstrip()
    return text


def _settings(settings: Settings) -> Text:
    default = Settings()
    lines = []
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, tuple):
            value = ",".join(value) or "-"
        mark = "" if getattr(settings, f.name) == getattr(default, f.name) else "  *"
        shown = "-" if value in (None, "") else value
        lines.append(f"{f.name.replace('_', ' '):<27} {shown}{mark}")
    lines.append("(* differs from the default)")
    return Text("\n".join(lines))
