"""The job table: one row per job in queue order, updated cell by cell.

Rows are keyed by job id. Events only record the newest job snapshot and mark the row
dirty; `draw()` (the app's ~4 Hz flush) adds new rows and rewrites only the cells that
changed (`update_cell`). A DataTable re-renders every visible cell after any change, so
drawing per event would repaint hundreds of times while a big folder is queued; drawing
per flush keeps a slow SSH link and a busy CPU out of each other's way. New rows are added
for at most ADD_BUDGET per flush (a row costs about 0.1 ms to add and as much again to
measure), so 10,000 files arriving at once fill the table over some seconds while keys
and frames keep their turn; a key that needs every row (home, end, a move) adds the rest.
Key presses (move, cancel) change rows at once. State is always written as a word; colour
repeats it.

Column widths and cell text (and folding columns at 80x24) are in job_cells.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from subq.engine import Job, JobState, StageProgressed, Where, WorkerChanged, reorder
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist

from .job_cells import COLUMNS, OUTPUT_MIN, RowState, cells, pad, widths

ADD_BUDGET = 0.02  # seconds of adding new rows per flush


class JobTable(DataTable[object]):
    """The queue; `selected_id` is the job under the cursor."""

    # DataTable's home/end scroll sideways (cell cursors); in a row table they are the first
    # and last job, as the help says. ctrl+home/ctrl+end keep doing the same.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "home",
            "first_job",
            "First job",
            show=False,
            id="first_job",
            tooltip="Put the cursor on the first job",
        ),
        Binding(
            "end",
            "last_job",
            "Last job",
            show=False,
            id="last_job",
            tooltip="Put the cursor on the last job",
        ),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=0, **kwargs)  # type: ignore[arg-type]
        self.rows_by_id: dict[int, RowState] = {}
        self.order: list[int] = []  # queue order, including rows not drawn yet
        self.probed: dict[int, float | None] = {}  # durations read by the UI before a run
        self._unadded: dict[int, None] = {}  # recorded, not yet drawn, in arrival order
        self._dirty: set[int] = set()
        self.narrow = False  # dur, lang and speed folded away, progress without its bar
        self.flags_folded = True  # no flags column (under LANG_FROM): flags lead the output
        self._ran_on: dict[str, int] = {}  # device entry -> the job it ran last

    def on_mount(self) -> None:
        for n, (key, label, width, right) in enumerate(COLUMNS):
            text = Text(label, justify="right") if right else pad(Text(label), n > 0)
            self.add_column(text, key=key, width=width + (n > 0) if width else None)
        self.watch(self.app, "theme", self._restyle, init=False)

    def on_resize(self) -> None:
        """Fold columns when the reason would not fit; give the file name what is left."""
        if not self.columns:
            return
        width = self.size.width - 1  # 1: the vertical scrollbar
        wide = widths(width, narrow=False)
        narrow = width - sum(wide.values()) - 1 < OUTPUT_MIN  # 1: the output's separator
        sizes = widths(width, narrow) if narrow else wide
        changed = False
        for key, size in sizes.items():
            column = self.columns.get(ColumnKey(key))
            if column is not None and column.width != size:
                column.width, changed = size, True
        folded = sizes.get("flags", 0) == 0
        if narrow != self.narrow or folded != self.flags_folded:
            self.narrow, self.flags_folded, changed = narrow, folded, True
            self.columns[ColumnKey("output")].auto_width = not narrow
            self.columns[ColumnKey("progress")].label = pad(Text("prog" if narrow else "progress"))
            for row in self.rows_by_id.values():
                if row.job.id not in self._unadded:
                    self._write(row, self._cells(row, 0.0), only=("progress", "output"))
        if changed and self.row_count:  # an update with update_width makes it re-measure
            key = self.coordinate_to_cell_key((0, 0)).row_key  # type: ignore[arg-type]
            self.update_cell(key, "file", self.get_cell(key, "file"), update_width=True)
        if changed:
            self.refresh()

    def action_first_job(self) -> None:
        """home: the cursor on the first job."""
        self.draw_now()
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def action_last_job(self) -> None:
        """end: the cursor on the last job (rows still waiting to be drawn are drawn first)."""
        self.draw_now()
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)

    def _restyle(self) -> None:
        self.draw_now()
        for row in self.rows_by_id.values():
            self._write(row, self._cells(row, 0.0), only=("state", "flags", "progress", "output"))

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

    @property
    def backlog(self) -> int:
        """Rows recorded and not drawn yet (thousands while a big folder arrives)."""
        return len(self._unadded)

    def unprobed(self) -> list[tuple[int, str]]:
        """Jobs whose duration nobody has read yet (the engine probes only when it runs)."""
        return [
            (i, r.job.path)
            for i, r in self.rows_by_id.items()
            if r.job.duration is None and i not in self.probed
        ]

    # -- recording (cheap; drawn by draw()) ------------------------------------------
    def upsert(self, job: Job, at: float, now: float) -> None:
        """Record a job snapshot: a new row, or new values for an existing one."""
        row = self.rows_by_id.get(job.id)
        if row is None:
            row = self.rows_by_id[job.id] = RowState(job, at)
            row.started_at = now if job.state == JobState.RUNNING else None
            self.order.append(job.id)
            self._unadded[job.id] = None
            return
        if at < row.changed_at:
            return  # an older snapshot than the one shown
        if job.state == JobState.RUNNING and row.job.state != JobState.RUNNING:
            row.started_at = now
        if job.stage != row.job.stage or job.state != JobState.RUNNING:
            row.progress = None
        if job.state != row.job.state:
            row.mark = None  # the engine has acted on the order
        if job.state != JobState.RUNNING:
            row.device = None  # its worker is free again (or gone)
        if row.job.state.finished and not job.state.finished:
            row.worker_note = ""  # queued again: a new run
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
        if event.device:
            row.device, self._ran_on[event.device] = event.device, event.job_id
        self._dirty.add(event.job_id)

    def worker(self, event: WorkerChanged) -> bool:
        """A worker took a job (its row names the device) or died on it (the row says so);
        False when the event is about no job in the table."""
        job_id = event.job_id
        if job_id is None and event.state == "died":  # the job its device last ran
            job_id = self._ran_on.get(event.device)
        row = self.rows_by_id.get(job_id) if job_id is not None else None
        if row is None:
            return False
        if event.state == "busy":  # shown while the job runs (it may start just after)
            row.device, self._ran_on[event.device] = event.device, row.job.id
        elif event.state == "died" and not row.job.state.finished:
            row.device = None  # the newest note says most ("…; resumed" after "died (…)")
            row.worker_note = event.note or f"worker on {event.device} died"
        else:
            return False
        self._dirty.add(row.job.id)
        return True

    def set_probed(self, durations: dict[int, float | None]) -> None:
        """Durations the UI read itself; shown until the engine probes the job."""
        self.probed.update(durations)
        self._dirty.update(i for i in durations if i in self.rows_by_id)

    # -- drawing --------------------------------------------------------------------
    def draw(self, now: float) -> None:
        """Add new rows (for up to ADD_BUDGET), rewrite changed cells, count running jobs' time."""
        if self._unadded:
            self._add_rows(now, time.perf_counter() + ADD_BUDGET)
        waiting = self._unadded  # drawn whole, with their newest values, when added
        for job_id in [i for i in self._dirty if i not in waiting]:
            row = self.rows_by_id.get(job_id)
            if row is not None:
                self._write(row, self._cells(row, now))
        self._dirty = {i for i in self._dirty if i in waiting}
        for row in self.rows_by_id.values():
            if row.job.state == JobState.RUNNING and row.job.id not in waiting:
                self._write(row, self._cells(row, now), only=("time",))

    def draw_now(self, now: float = 0.0) -> None:
        """Add all the recorded new rows (at once before a key acts on every row)."""
        self._add_rows(now, float("inf"))

    def _add_rows(self, now: float, until: float) -> None:
        """Add recorded new rows in arrival order until `until` (time.perf_counter())."""
        added = 0
        while self._unadded:
            if added % 16 == 0 and time.perf_counter() >= until:
                return
            job_id = next(iter(self._unadded))
            del self._unadded[job_id]
            self.add_row(*self._cells(self.rows_by_id[job_id], now), key=str(job_id))
            self._dirty.discard(job_id)
            added += 1

    def remove_job(self, job_id: int) -> None:
        """Forget a job the engine removed."""
        if self.rows_by_id.pop(job_id, None) is None:
            return
        self.order.remove(job_id)
        if self._unadded.pop(job_id, 0) is None:
            return  # never drawn
        with contextlib.suppress(RowDoesNotExist):
            self.remove_row(str(job_id))

    def mark(self, job_id: int, text: str) -> None:
        """Show an order the engine has not applied yet ("cancelling…") in the stage cell,
        until the job's state changes."""
        if job_id in self._unadded:
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

    def local_move(self, job_id: int, where: Where) -> None:
        """Move a row at once by the engine's own rule, so the key press shows immediately."""
        self.reorder(reorder(self.order, job_id, where))

    def _write(self, row: RowState, cells: list[Text], only: tuple[str, ...] = ()) -> None:
        key = str(row.job.id)
        for (column, *_rest), value in zip(COLUMNS, cells, strict=True):
            if only and column not in only:
                continue
            if self.get_cell(key, column) != value:
                self.update_cell(key, column, value, update_width=column == "output")

    def _cells(self, row: RowState, now: float) -> list[Text]:
        probed = self.probed.get(row.job.id)
        return cells(row, now, self.app.theme_variables, self.narrow, probed, self.flags_folded)
