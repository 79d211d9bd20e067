"""The main screen: the job table, the memory panel, the log strip, and every queue key.

Keys act on the engine through its non-blocking control calls and show their effect at
once (the row moves, the header says "pausing…", a cell says "cancelling…"); the engine's
events then confirm or correct what is shown. What each key does is in job_actions.py;
this screen holds the widgets, the bindings and the engine's events.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from subq.engine import (
    EngineState,
    EngineStateChanged,
    Event,
    JobChanged,
    JobRemoved,
    JobState,
    LogEmitted,
    ModelLoaded,
    ModelUnloaded,
    QueueReordered,
    WorkerChanged,
    describe_unload,
    probe_isolated,
)
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import DataTable, Footer

from ..messages import Pending
from ..widgets.job_table import JobTable
from ..widgets.log_strip import LogStrip
from ..widgets.memory_panel import MemoryPanel
from ..widgets.status_bar import StatusBar
from ..widgets.workers import worker_note
from .job_actions import JobActions

if TYPE_CHECKING:
    from subq.engine import Engine

JOB_LOG_LINES = 500
COMPACT_BELOW = 120  # columns; below this the memory panel folds to a few lines

# (binding id, group) for the help screen and the command palette, in display order
GROUPS = {
    "Queue": ("add", "pause", "resume", "clear"),
    "Selected job": (
        "details",
        "move_up",
        "move_down",
        "move_top",
        "move_bottom",
        "cancel",
        "remove",
        "retry",
    ),
    "Models and GPU": ("unload", "release", "workers"),
    "App": ("settings", "help", "palette", "quit"),
}


class Probed(Message):
    """Durations read by the probe worker, by job id (None: not readable media)."""

    def __init__(self, durations: dict[int, float | None]) -> None:
        super().__init__()
        self.durations = durations


class MainScreen(JobActions):
    """The queue at a glance; owns the per-job log lines the details screen shows."""

    paused: reactive[bool] = reactive(False, bindings=True)
    """What the user asked for last (the engine confirms it at its next safe point)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # a and s open forms: priority, so they open before the keys typed next are lost
        Binding("a", "add", "Add", id="add", tooltip="Queue files or folders", priority=True),
        Binding(
            "p",
            "pause",
            "Pause",
            id="pause",
            tooltip="Pause at the next safe point; the running job keeps its checkpoint",
        ),
        Binding("p", "resume", "Resume", id="resume", tooltip="Resume the paused batch"),
        Binding(
            "enter", "details", "Details", id="details", tooltip="Details of the job", priority=True
        ),
        Binding(
            "K,shift+up",
            "move('up')",
            "Move up",
            id="move_up",
            show=False,
            tooltip="Move the job up the queue",
        ),
        Binding(
            "J,shift+down",
            "move('down')",
            "Move down",
            id="move_down",
            show=False,
            tooltip="Move the job down the queue",
        ),
        Binding(
            "t", "move('top')", "Move to top", id="move_top", show=False, tooltip="Run the job next"
        ),
        Binding(
            "b",
            "move('bottom')",
            "Move to bottom",
            id="move_bottom",
            show=False,
            tooltip="Run the job last",
        ),
        Binding("x", "cancel_job", "Cancel", id="cancel", tooltip="Cancel the selected job"),
        Binding(
            "delete",
            "remove_job",
            "Remove",
            id="remove",
            show=False,
            tooltip="Remove the job from the queue (a running job is cancelled first)",
        ),
        Binding(
            "r", "retry", "Retry", id="retry", tooltip="Queue a finished job again", show=False
        ),
        Binding(
            "c",
            "clear_finished",
            "Clear finished",
            id="clear",
            show=False,
            tooltip="Remove done, failed, cancelled and skipped jobs from the list",
        ),
        Binding(
            "u",
            "unload",
            "Unload",
            id="unload",
            tooltip="Unload a model now or at the end of the current stage",
        ),
        Binding(
            "R",
            "release_gpu",
            "Release",
            id="release",
            tooltip="Pause, unload every model and end every worker process",
        ),
        Binding(
            "w",
            "workers",
            "Workers",
            id="workers",
            show=False,
            tooltip="Pause, resume or release one worker while the others go on",
        ),
        Binding(
            "s",
            "settings",
            "Settings",
            id="settings",
            priority=True,
            tooltip="Model, languages, formats, output folder, memory policy",
        ),
    ]

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.job_logs: dict[int, deque[str]] = {}
        self.set_reactive(MainScreen.paused, engine.paused)
        self._asked_at = 0.0  # time.time() of the last pause/resume/unload request
        self._counts_dirty = True
        self._probe_timer: Timer | None = None
        self._probing: set[int] = set()  # job ids handed to a probe worker, not answered yet
        self._toasts: list[tuple[str, str, SeverityLevel]] = []
        self._errors: deque[str] = deque(maxlen=16)  # logged: a failed job's is not said twice
        # Made here, not looked up per event: hundreds of events a second must stay cheap.
        self.status = StatusBar(id="status")
        self.table = JobTable(id="jobs")
        self.memory = MemoryPanel(id="memory")
        self.log_strip = LogStrip(id="log")

    def compose(self) -> ComposeResult:
        yield self.status
        with Container(id="body"):
            yield self.table
            yield self.memory
            yield self.log_strip
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.memory.border_title = "memory"
        self.log_strip.border_title = "log"
        self.table.focus()
        self.subq.connect()

    def on_resize(self) -> None:
        self.memory.compact = self.size.width < COMPACT_BELOW

    # -- engine events ----------------------------------------------------------------
    def load(self, now: float) -> None:
        """Show the engine's current view before any event arrives."""
        for job in self.engine.jobs():
            self.table.upsert(job, 0.0, now)
        self.table.draw(now)
        self.memory.set_models(self.engine.loaded_models)
        self.status.show_engine(self.engine.state, self.memory.names(), ())
        self._probe_soon()
        self._refresh_counts()

    def apply(self, event: Event, now: float) -> None:
        """One engine event, in the order the engine published it."""
        match event:
            case JobChanged(job=job, previous=previous):
                if job.id not in self.table.rows_by_id and job.duration is None:
                    self._probe_soon()
                self.table.upsert(job, event.at, now)
                if previous is not None and previous != job.state:
                    detail = f": {job.error}" if job.error else ""
                    self._job_log(job.id, now, f"{previous.value} → {job.state.value}{detail}")
                    if job.state == JobState.FAILED and job.error not in self._errors:
                        self._log("error", job.error or f"{job.name} failed", now)
                        self._toast(f"{job.name} failed", job.error or "failed", "error")
                self._counts_dirty = True
            case JobRemoved(job_id=job_id):
                self.table.remove_job(job_id)
                self.job_logs.pop(job_id, None)
                self._counts_dirty = True
            case QueueReordered(order=order):
                self.table.reorder(order)
            case ModelLoaded():
                self._model_event(event)
                self._log(
                    "info",
                    f"loaded {event.kind} model {event.name} on {event.device} in "
                    f"{event.seconds:.1f} s",
                    now,
                )
            case ModelUnloaded():
                self._model_event(event)
                text = describe_unload(event)
                self._log("info", f"{text} [{event.reason}]", now)
                if event.reason != "released":  # Release said it in one toast already
                    self.notify(text, title="Memory returned", timeout=4)
            case EngineStateChanged(state=state, models=models, pending=pending):
                self.memory.keep_models(models)
                names = self.memory.names()  # each model once, "×2" where two workers hold it
                if self.subq.quitting and state != EngineState.STOPPED:
                    return  # keep saying "stopping…" until it has
                if event.at < self._asked_at:
                    self.status.show_engine(self.status.state, names)
                    return
                self.paused = state in (EngineState.PAUSED, EngineState.PAUSING)
                self.status.show_engine(state, names, pending)
                self._counts_dirty = True
            case WorkerChanged(state=state, note=note):
                on_a_job = self.table.worker(event)
                self.memory.worker(event)
                if state == "died" and not on_a_job:  # on a job, the engine logs it
                    text = worker_note(event.device, note)
                    self._log("warning", text, now)
                    self._toast("warning", text, "warning")
            case LogEmitted(level=level, message=message, job_id=job_id):
                self._log(level, message, event.at if event.earlier else now, job_id)
                if level == "error" and not event.earlier:  # a retry failing alike is news
                    self._errors.append(message)
                if level in ("warning", "error") and not event.earlier:
                    self._toast(level, message, "error" if level == "error" else "warning")

    def _toast(self, title: str, message: str, severity: SeverityLevel) -> None:
        """Queue a notification; the flush shows a few and sums up the rest (no toast storm
        when a folder of broken files fails at once)."""
        self._toasts.append((title, message, severity))

    def _show_toasts(self) -> None:
        toasts, self._toasts = self._toasts, []
        for title, message, severity in toasts[:2]:
            self.notify(message, title=title, severity=severity, timeout=10)
        if len(toasts) > 2:
            self.notify(
                f"{len(toasts) - 2} more errors and warnings: see the log and each "
                "job's details (enter)",
                severity="error",
                timeout=10,
            )

    def _probe_soon(self) -> None:
        if self._probe_timer is None:
            self._probe_timer = self.set_timer(0.3, self._start_probe)

    def _start_probe(self) -> None:
        self._probe_timer = None
        if self._probing:
            return  # one probe thread at a time: it asks again for rows added meanwhile
        jobs = self.table.unprobed()
        if jobs:
            self._probing.update(i for i, _path in jobs)
            self.probe_durations(jobs)

    @work(thread=True, group="probe")
    def probe_durations(self, jobs: list[tuple[int, str]]) -> None:
        """Read durations of queued files off the UI thread (the engine probes only on run),
        in the reader child: a file that crashes or hangs FFmpeg costs its duration only."""
        durations: dict[int, float | None] = {}
        for job_id, path in jobs:
            try:
                durations[job_id] = probe_isolated(Path(path)).duration
            except Exception:  # MediaError, OSError, anything: every row gets its answer
                durations[job_id] = None
            if len(durations) >= 50:
                self.post_message(Probed(durations))
                durations = {}
        self.post_message(Probed(durations))

    @on(Probed)
    def _probed(self, message: Probed) -> None:
        self._probing.difference_update(message.durations)
        self.table.set_probed(message.durations)
        if not self._probing:
            self._probe_soon()  # rows that arrived while it ran

    def _model_event(self, event: ModelLoaded | ModelUnloaded) -> None:
        self.memory.model_event(event)
        self.status.show_engine(self.status.state, self.memory.names())

    def flush(self, pending: Pending, now: float) -> None:
        """The ~4 Hz redraw of the coalesced high-rate events."""
        for event in pending.progress.values():
            self.table.progress(event, now)
        self.table.draw(now)
        self.memory.samples(pending.samples)
        if self._toasts:
            self._show_toasts()
        if self._counts_dirty:
            self._refresh_counts()

    def _log(self, level: str, message: str, now: float, job_id: int | None = None) -> None:
        self.log_strip.add(level, message, now)
        if job_id is not None:
            self._job_log(job_id, now, f"{level}: {message}" if level != "info" else message)

    def _job_log(self, job_id: int, now: float, line: str) -> None:
        from ..widgets.formatting import clock_time

        self.job_logs.setdefault(job_id, deque(maxlen=JOB_LOG_LINES)).append(
            f"{clock_time(now)} {line}"
        )

    def stopping(self) -> None:
        """Quit was chosen: say what is happening while the engine reaches a safe point."""
        self.status.show_engine("stopping")
        self._log(
            "info",
            "stopping: the running job keeps its checkpoint; the queue is kept",
            self.subq.clock(),
        )

    @on(DataTable.RowSelected, "#jobs")
    def _row_selected(self) -> None:
        self.action_details()
