"""The job table: one row per job in queue order, updated cell by cell.

Rows are keyed by job id. An event rewrites only the cells of its own row (`update_cell`),
and a reorder re-sorts row positions without rebuilding anything, so hundreds of jobs stay
smooth over SSH. State is always written as a word; colour only repeats it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.style import Style
from rich.text import Text
from subq.engine.events import StageProgressed
from subq.engine.jobs import Job, JobState, Stage
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from .formatting import bar, short_duration, theme_style

# key, label, width (None: takes what is left), right-aligned
COLUMNS: tuple[tuple[str, str, int | None, bool], ...] = (
    ("id", "#", 3, True),
    ("file", "file", 16, False),
    ("dur", "dur", 5, True),
    ("state", "state", 11, False),
    ("stage", "stage", 10, False),
    ("progress", "progress", 10, False),
    ("speed", "speed", 5, True),
    ("time", "time/ETA", 11, False),
    ("output", "output", None, False),
)
BAR_WIDTH = 5
STATE_COLOURS = {
    JobState.RUNNING: "text-primary",
    JobState.PAUSED: "text-warning",
    JobState.INTERRUPTED: "text-warning",
    JobState.DONE: "text-success",
    JobState.FAILED: "text-error",
    JobState.CANCELLED: "text-secondary",
    JobState.SKIPPED: "text-secondary",
}


@dataclass
class RowState:
    """What the table knows about a job beyond the cells: for ordering and staleness."""

    job: Job
    changed_at: float = 0.0
    started_at: float | None = None


class JobTable(DataTable[object]):
    """The queue; `selected_id` is the job under the cursor."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.rows_by_id: dict[int, RowState] = {}
        self.order: list[int] = []

    def on_mount(self) -> None:
        for key, label, width, right in COLUMNS:
            self.add_column(Text(label, justify="right" if right else "left"), key=key,
                            width=width)

    # -- reading --------------------------------------------------------------------
    @property
    def selected_id(self) -> int | None:
        if not self.order or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key  # type: ignore[arg-type]
        except Exception:
            return None
        return int(key.value) if key.value is not None else None

    def job(self, job_id: int) -> Job | None:
        row = self.rows_by_id.get(job_id)
        return row.job if row else None

    def jobs(self) -> list[Job]:
        return [self.rows_by_id[i].job for i in self.order]

    # -- writing --------------------------------------------------------------------
    def upsert(self, job: Job, at: float, now: float) -> None:
        """Add the job's row, or rewrite its cells in place."""
        row = self.rows_by_id.get(job.id)
        if row is None:
            row = self.rows_by_id[job.id] = RowState(job, at)
            self.order.append(job.id)
            self.add_row(*self._cells(row, None, now), key=str(job.id))
            return
        if at < row.changed_at:
            return  # an older snapshot than the one shown
        if job.state == JobState.RUNNING and row.job.state != JobState.RUNNING:
            row.started_at = now
        row.job, row.changed_at = job, at
        self._write(row, self._cells(row, None, now))

    def progress(self, event: StageProgressed, now: float) -> None:
        """Newest progress for a running job; stale reports from an earlier stage are dropped."""
        row = self.rows_by_id.get(event.job_id)
        if row is None or row.job.state != JobState.RUNNING or event.at < row.changed_at:
            return
        if row.job.stage not in (event.stage, None):
            return
        self._write(row, self._cells(row, event, now), only=("stage", "progress", "speed",
                                                             "time"))

    def remove_job(self, job_id: int) -> None:
        if self.rows_by_id.pop(job_id, None) is None:
            return
        self.order.remove(job_id)
        with contextlib.suppress(RowDoesNotExist):
            self.remove_row(str(job_id))

    def mark(self, job_id: int, text: str) -> None:
        """Show an order the engine has not applied yet ("cancelling…") in the stage cell."""
        if job_id in self.rows_by_id:
            self.update_cell(str(job_id), "stage", Text(text, style="italic"))

    def reorder(self, order: Iterable[int]) -> None:
        """Put rows in `order` (ids not in it keep their relative place at the end)."""
        wanted = [i for i in order if i in self.rows_by_id]
        rest = [i for i in self.order if i not in set(wanted)]
        new = wanted + rest
        if new == self.order:
            return
        selected = self.selected_id
        self.order = new
        index = {job_id: n for n, job_id in enumerate(new)}
        self.sort("id", key=lambda cell: index.get(int(str(cell)), len(index)))
        if selected is not None:
            self.move_cursor(row=index[selected], animate=False)

    def local_move(self, job_id: int, where: str) -> None:
        """Move a row at once, the way the engine will, so the key press shows immediately."""
        if job_id not in self.order:
            return
        order = list(self.order)
        i = order.index(job_id)
        order.pop(i)
        target = {"up": max(0, i - 1), "down": min(len(order), i + 1), "top": 0,
                  "bottom": len(order)}[where]
        order.insert(target, job_id)
        self.reorder(order)

    def tick(self, now: float) -> None:
        """Refresh the elapsed time of running jobs that report no progress (load, decode)."""
        for row in self.rows_by_id.values():
            if row.job.state == JobState.RUNNING and row.started_at is not None:
                elapsed = now - row.started_at
                if row.job.stage in (Stage.PROBE, Stage.DECODE, Stage.WAITING):
                    self.update_cell(str(row.job.id), "time", short_duration(elapsed))

    # -- cells ----------------------------------------------------------------------
    def _write(self, row: RowState, cells: list[object], only: tuple[str, ...] = ()) -> None:
        key = str(row.job.id)
        for (column, *_rest), value in zip(COLUMNS, cells, strict=True):
            if only and column not in only:
                continue
            if self.get_cell(key, column) != value:
                self.update_cell(key, column, value)

    def _cells(self, row: RowState, event: StageProgressed | None, now: float) -> list[object]:
        job = row.job
        palette = self.app.theme_variables
        style = theme_style(palette, STATE_COLOURS.get(job.state, ""),
                            bold=job.state == JobState.RUNNING)
        stage = job.stage.value if job.stage else ""
        if job.state == JobState.RUNNING and job.stage == Stage.WAITING:
            stage = "wait mem"
        fraction = event.fraction if event else job.progress
        progress: object = ""
        if job.state == JobState.DONE:
            fraction = 1.0
        if job.state == JobState.RUNNING or job.state == JobState.DONE or fraction > 0:
            progress = Text.assemble((bar(fraction, BAR_WIDTH), theme_style(palette,
                                     "text-primary")), f"{fraction * 100:4.0f}%")
        return [
            Text(str(job.id), justify="right"),
            Text(job.name, no_wrap=True, overflow="ellipsis"),
            Text(short_duration(job.duration), justify="right"),
            Text(job.state.value, style=style),
            Text(stage, no_wrap=True, overflow="ellipsis"),
            progress,
            Text(_speed(job, event), justify="right"),
            _time(job, event, row, now),
            _output(job, theme_style(palette, "text-error")),
        ]


def _speed(job: Job, event: StageProgressed | None) -> str:
    speed = event.speed if event else None
    if speed is None and job.state == JobState.DONE and job.duration:
        spent = dict(job.stage_times).get("transcribe")
        speed = job.duration / spent if spent else None
    if not speed:
        return ""
    return f"{speed:.0f}x" if speed >= 100 else f"{speed:.1f}x"


def _time(job: Job, event: StageProgressed | None, row: RowState, now: float) -> str:
    if job.state == JobState.RUNNING:
        if event is not None:
            eta = f"/{short_duration(event.eta)}" if event.eta is not None else ""
            return short_duration(event.elapsed) + eta
        return short_duration(now - row.started_at) if row.started_at else ""
    spent = sum(t for _k, t in job.stage_times)
    return short_duration(spent) if spent else ""


def _output(job: Job, error_style: Style) -> Text:
    if job.state == JobState.FAILED and job.error:
        return Text(job.error, style=error_style, no_wrap=True, overflow="ellipsis")
    if job.state == JobState.SKIPPED and job.error:
        return Text("skipped: " + job.error, no_wrap=True, overflow="ellipsis")
    if job.outputs:
        return Text(", ".join(Path(o).name for o in job.outputs), no_wrap=True,
                    overflow="ellipsis")
    if job.resume_from:
        return Text(f"resumes at {short_duration(job.resume_from)}")
    return Text("")
