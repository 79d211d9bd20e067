"""The job table: one row per job in queue order, updated cell by cell.

Rows are keyed by job id. Events only record the newest job snapshot and mark the row
dirty; `draw()` (the app's ~4 Hz flush) adds new rows in one batch and rewrites only the
cells that changed (`update_cell`). A DataTable re-renders every visible cell after any
change, so drawing per event would repaint hundreds of times while a big folder is queued;
drawing per flush keeps a slow SSH link and a busy CPU out of each other's way. Key presses
(move, cancel) change rows at once. State is always written as a word; colour repeats it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.style import Style
from rich.text import Text
from subq.engine.events import StageProgressed
from subq.engine.jobs import Job, JobState, Stage
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist

from .formatting import bar, short_duration, theme_style

# key, label, width (None: takes what is left), right-aligned. Cells carry their own one
# space of separation (cell_padding=0): 2 spaces per column would not fit 80 columns.
COLUMNS: tuple[tuple[str, str, int | None, bool], ...] = (
    ("id", "#", 3, True),
    ("file", "file", 16, False),
    ("dur", "dur", 5, True),
    ("state", "state", 11, False),
    ("stage", "stage", 10, False),
    ("progress", "progress", 10, False),
    ("speed", "speed", 5, True),
    ("time", "time/ETA", 9, False),
    ("output", "output", None, False),
)
BAR_WIDTH = 5
ADD_INTERVAL = 1.0  # seconds between batches of new rows
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
    changed_at: float = 0.0  # the engine's time of the snapshot shown (older ones are dropped)
    started_at: float | None = None  # UI clock when it started running
    progress: StageProgressed | None = None  # newest report for the current stage
    progress_at: float = 0.0  # UI clock when that report arrived
    mark: str | None = None  # an order sent but not yet applied ("cancelling…")


class JobTable(DataTable[object]):
    """The queue; `selected_id` is the job under the cursor."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=0,
                         **kwargs)  # type: ignore[arg-type]
        self.rows_by_id: dict[int, RowState] = {}
        self.order: list[int] = []  # queue order, including rows not drawn yet
        self.probed: dict[int, float | None] = {}  # durations read by the UI before a run
        self._unadded: list[int] = []
        self._added_at = 0.0  # time.monotonic() of the last batch of new rows
        self._dirty: set[int] = set()

    def on_mount(self) -> None:
        for n, (key, label, width, right) in enumerate(COLUMNS):
            text = Text(label, justify="right") if right else _pad(Text(label), n > 0)
            self.add_column(text, key=key, width=width + (n > 0) if width else None)
        self.watch(self.app, "theme", self._restyle, init=False)

    def on_resize(self) -> None:
        """Give the file name the room left over (the other columns are fixed)."""
        others = sum((width or 0) + (n > 0) for n, (key, _l, width, _r) in enumerate(COLUMNS)
                     if key != "file")
        rest = self.size.width - 1 - others  # 1: the vertical scrollbar
        width = max(12, rest if rest < 40 else min(48, max(20, rest // 2)))
        column = self.columns.get(ColumnKey("file"))
        if column is None or column.width == width:
            return
        column.width = width
        if self.row_count:  # an update with update_width makes the table re-measure
            key = self.coordinate_to_cell_key((0, 0)).row_key  # type: ignore[arg-type]
            self.update_cell(key, "file", self.get_cell(key, "file"), update_width=True)
        self.refresh()

    def _restyle(self) -> None:
        self.draw_now()
        for row in self.rows_by_id.values():
            self._write(row, self._cells(row, 0.0), only=("state", "progress", "output"))

    # -- reading --------------------------------------------------------------------
    @property
    def selected_id(self) -> int | None:
        """The job id under the cursor, or None in an empty table."""
        if not self.row_count or self.cursor_row < 0:
            return None
        try:
            key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key  # type: ignore[arg-type]
        except Exception:
            return None
        return int(key.value) if key.value is not None else None

    def job(self, job_id: int) -> Job | None:
        """The newest snapshot of a job, drawn or not."""
        row = self.rows_by_id.get(job_id)
        return row.job if row else None

    def jobs(self) -> list[Job]:
        """All jobs in queue order (includes rows waiting to be drawn)."""
        return [self.rows_by_id[i].job for i in self.order]

    def unprobed(self) -> list[tuple[int, str]]:
        """Jobs whose duration nobody has read yet (the engine probes only when it runs)."""
        return [(i, r.job.path) for i, r in self.rows_by_id.items()
                if r.job.duration is None and i not in self.probed]

    # -- recording (cheap; drawn by draw()) ------------------------------------------
    def upsert(self, job: Job, at: float, now: float) -> None:
        """Record a job snapshot: a new row, or new values for an existing one."""
        row = self.rows_by_id.get(job.id)
        if row is None:
            row = self.rows_by_id[job.id] = RowState(job, at)
            row.started_at = now if job.state == JobState.RUNNING else None
            self.order.append(job.id)
            self._unadded.append(job.id)
            return
        if at < row.changed_at:
            return  # an older snapshot than the one shown
        if job.state == JobState.RUNNING and row.job.state != JobState.RUNNING:
            row.started_at = now
        if job.stage != row.job.stage or job.state != JobState.RUNNING:
            row.progress = None
        if job.state != row.job.state:
            row.mark = None  # the engine has acted on the order
        row.job, row.changed_at = job, at
        self._dirty.add(job.id)

    def progress(self, event: StageProgressed, now: float) -> None:
        """Newest progress for a running job; stale reports from an earlier stage are dropped."""
        row = self.rows_by_id.get(event.job_id)
        if row is None or row.job.state != JobState.RUNNING or event.at < row.changed_at:
            return
        if row.job.stage not in (event.stage, None):
            return
        row.progress, row.progress_at = event, now
        self._dirty.add(event.job_id)

    def set_probed(self, durations: dict[int, float | None]) -> None:
        """Durations the UI read itself; shown until the engine probes the job."""
        self.probed.update(durations)
        self._dirty.update(i for i in durations if i in self.rows_by_id)

    # -- drawing --------------------------------------------------------------------
    def draw(self, now: float) -> None:
        """Add new rows in one batch, rewrite changed cells, count running jobs' time."""
        # Every change re-renders all visible cells; while hundreds of jobs are being queued,
        # show new rows at most once a second so the engine (same process, same GIL) keeps
        # going. A single add after a quiet second shows at once.
        if time.monotonic() - self._added_at >= ADD_INTERVAL:
            self.draw_now(now)
        waiting = set(self._unadded)  # drawn whole, with their newest values, when added
        for job_id in self._dirty - waiting:
            row = self.rows_by_id.get(job_id)
            if row is not None:
                self._write(row, self._cells(row, now))
        self._dirty &= waiting
        for row in self.rows_by_id.values():
            if row.job.state == JobState.RUNNING and row.job.id not in waiting:
                self._write(row, self._cells(row, now), only=("time",))

    def draw_now(self, now: float = 0.0) -> None:
        """Add the recorded new rows (at once before a key acts on rows)."""
        if self._unadded:
            self._added_at = time.monotonic()
        for job_id in self._unadded:
            if job_id in self.rows_by_id:
                self.add_row(*self._cells(self.rows_by_id[job_id], now), key=str(job_id))
            self._dirty.discard(job_id)
        self._unadded.clear()

    def remove_job(self, job_id: int) -> None:
        """Forget a job the engine removed."""
        if self.rows_by_id.pop(job_id, None) is None:
            return
        self.order.remove(job_id)
        if job_id in self._unadded:
            self._unadded.remove(job_id)
            return
        with contextlib.suppress(RowDoesNotExist):
            self.remove_row(str(job_id))

    def mark(self, job_id: int, text: str) -> None:
        """Show an order the engine has not applied yet ("cancelling…") in the stage cell,
        until the job's state changes."""
        self.draw_now()
        row = self.rows_by_id.get(job_id)
        if row is not None:
            row.mark = text
            self._write(row, self._cells(row, 0.0), only=("stage",))

    def reorder(self, order: Iterable[int]) -> None:
        """Put rows in `order` (ids not in it keep their relative place at the end)."""
        wanted = [i for i in order if i in self.rows_by_id]
        seen = set(wanted)
        new = wanted + [i for i in self.order if i not in seen]
        if new == self.order:
            return
        self.draw_now()
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

    def _write(self, row: RowState, cells: list[Text], only: tuple[str, ...] = ()) -> None:
        key = str(row.job.id)
        for (column, *_rest), value in zip(COLUMNS, cells, strict=True):
            if only and column not in only:
                continue
            if self.get_cell(key, column) != value:
                self.update_cell(key, column, value, update_width=column == "output")

    def _cells(self, row: RowState, now: float) -> list[Text]:
        job, event = row.job, row.progress
        palette = self.app.theme_variables
        style = theme_style(palette, STATE_COLOURS.get(job.state, ""),
                            bold=job.state == JobState.RUNNING)
        stage = job.stage.value if job.stage else ""
        if job.state == JobState.RUNNING and job.stage == Stage.WAITING:
            stage = "wait mem"
        stage_text = Text(row.mark, style="italic") if row.mark else Text(stage)
        fraction = 1.0 if job.state == JobState.DONE else (event.fraction if event else
                                                            job.progress)
        progress = Text("")
        if job.state in (JobState.RUNNING, JobState.DONE) or fraction > 0:
            progress = Text.assemble((bar(fraction, BAR_WIDTH), theme_style(palette,
                                     "text-primary")), f"{fraction * 100:4.0f}%")
        duration = job.duration if job.duration is not None else self.probed.get(job.id)
        return [
            Text(str(job.id), justify="right"),
            _pad(Text(job.name, no_wrap=True, overflow="ellipsis")),
            Text(short_duration(duration), justify="right"),
            _pad(Text(job.state.value, style=style)),
            _pad(stage_text),
            _pad(progress),
            Text(_speed(job, event), justify="right"),
            _pad(Text(_time(row, now), no_wrap=True, overflow="ellipsis")),
            _pad(_output(job, theme_style(palette, "text-error"))),
        ]


def _pad(text: Text, pad: bool = True) -> Text:
    """One leading space: the column separator (the table's own padding is 0)."""
    return Text.assemble(" ", text, no_wrap=True, overflow="ellipsis") if pad else text


def _speed(job: Job, event: StageProgressed | None) -> str:
    """Seconds of audio per second: from the running stage, or transcription of a done job."""
    speed = event.speed if event else None
    if speed is None and job.state == JobState.DONE and job.duration:
        spent = dict(job.stage_times).get("transcribe")
        speed = job.duration / spent if spent else None
    if not speed:
        return ""
    return f"{speed:.0f}x" if speed >= 100 else f"{speed:.1f}x"


def _time(row: RowState, now: float) -> str:
    """Running: time since it started / the stage's ETA, counted down between reports."""
    job, event = row.job, row.progress
    if job.state == JobState.RUNNING:
        elapsed = short_duration(max(0.0, now - row.started_at)) if row.started_at else ""
        if event is not None and event.eta is not None:
            return f"{elapsed}/{short_duration(max(0.0, event.eta - (now - row.progress_at)))}"
        return elapsed
    if not job.state.finished:
        return ""
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
