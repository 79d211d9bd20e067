"""What the main screen's keys do: add, pause and resume, the selected job's orders
(move, cancel, remove, retry, details), clear, unload and release, settings.

Each action asks the engine through a non-blocking control call and shows its effect at
once (the row moves, the header says "pausing…", a cell says "cancelling…"); the engine's
events then confirm or correct what is shown (MainScreen.apply). The bindings that name
these actions, and the help groups, stay on MainScreen.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from subq.engine import EngineState, JobState, Where
from textual.actions import SkipAction
from textual.screen import Screen

if TYPE_CHECKING:
    from subq.engine import Engine

    from ..protocols import AppView
    from ..widgets.job_table import JobTable
    from ..widgets.memory_panel import MemoryPanel
    from ..widgets.status_bar import StatusBar

BOTH_MODELS = ("translation", "whisper")  # what "all" unloads, as the header lists it


class JobActions(Screen[None]):
    """The queue's keys; MainScreen adds the widgets, the bindings and the engine's events."""

    engine: Engine
    table: JobTable
    status: StatusBar
    memory: MemoryPanel
    paused: bool  # MainScreen's reactive: what the user asked for last
    _asked_at: float  # time.time() of the last pause/resume/unload request
    job_logs: dict[int, deque[str]]
    _counts_dirty: bool

    @property
    def subq(self) -> AppView:
        return self.app  # type: ignore[return-value]

    # -- helpers ----------------------------------------------------------------------
    def _selected(self, verb: str) -> int | None:
        self.table.draw_now(self.subq.clock())
        job_id = self.table.selected_id
        if job_id is None:
            self.notify(
                f"No job to {verb}: the queue is empty (press a to add files)", severity="warning"
            )
        return job_id

    def _asked(self, state: str | None = None, pending: tuple[str, ...] | None = None) -> None:
        """Show what was asked for at once; older engine states are ignored until it acts."""
        self._asked_at = time.time()
        status = self.status
        status.show_engine(state or status.state, None, pending)
        self._refresh_counts()

    def _refresh_counts(self) -> None:
        self._counts_dirty = False
        self.status.show_counts(self.table.jobs(), self.paused)

    def _job_running(self) -> bool:
        return any(j.state == JobState.RUNNING for j in self.table.jobs())

    # -- the queue --------------------------------------------------------------------
    def action_add(self) -> None:
        """Open the picker; the files it answers with are handed to the engine."""
        from .picker import PickerScreen

        def added(paths: list[str] | None) -> None:
            if paths:
                self.engine.add(paths)
                self.notify(f"Adding {len(paths)} item{'s' if len(paths) > 1 else ''}")

        self.app.push_screen(PickerScreen(), added)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """p shows as Pause or Resume, whichever applies."""
        if action == "pause":
            return not self.paused
        if action == "resume":
            return self.paused
        return True

    def action_pause(self) -> None:
        """p while running (skipped when paused, so the resume binding gets the key)."""
        if self.paused:
            raise SkipAction()
        self.action_toggle_pause()

    def action_resume(self) -> None:
        """p while paused (skipped when running, so the pause binding gets the key)."""
        if not self.paused:
            raise SkipAction()
        self.action_toggle_pause()

    def action_toggle_pause(self) -> None:
        """Ask the engine, and show the state asked for at once (it confirms later)."""
        if self.paused:
            self.engine.resume()
            self.paused = False
            busy = any(j.state.runnable for j in self.table.jobs())
            self._asked(EngineState.RUNNING if busy else EngineState.IDLE)
        else:
            self.engine.pause()
            self.paused = True
            self._asked(EngineState.PAUSING if self._job_running() else EngineState.PAUSED)

    def action_clear_finished(self) -> None:
        """Drop finished jobs from the list (their outputs stay on disk)."""
        self.engine.clear_finished()

    # -- the selected job ---------------------------------------------------------------
    def action_move(self, where: Where) -> None:
        """Move the selected job; the row moves now, the engine's order follows."""
        job_id = self._selected("move")
        if job_id is not None:
            self.engine.move(job_id, where)
            self.table.local_move(job_id, where)

    def action_cancel_job(self) -> None:
        """Cancel the selected job (a running one stops at its next safe point)."""
        job_id = self._selected("cancel")
        job = self.table.job(job_id) if job_id is not None else None
        if job is None:
            return
        if job.state.finished:
            self.notify(f"{job.name} is already {job.state.value}", severity="warning")
            return
        self.engine.cancel(job.id)
        self.table.mark(job.id, "cancelling…")

    def action_remove_job(self) -> None:
        """Remove the selected job (the engine cancels a running one first)."""
        job_id = self._selected("remove")
        if job_id is not None:
            self.engine.remove(job_id)
            self.table.mark(job_id, "removing…")

    def action_retry(self) -> None:
        """Queue a finished job again; the engine forces a redo of done ones."""
        job_id = self._selected("retry")
        job = self.table.job(job_id) if job_id is not None else None
        if job is None:
            return
        if not job.state.finished:
            self.notify(
                f"{job.name} is {job.state.value}; only finished jobs can be retried",
                severity="warning",
            )
            return
        self.engine.retry(job.id)
        self.table.mark(job.id, "retrying…")

    def action_details(self) -> None:
        """Open the selected job's details."""
        job_id = self._selected("show")
        job = self.table.job(job_id) if job_id is not None else None
        if job is not None:
            from .details import DetailsScreen

            logs = self.job_logs.get(job.id, ())
            self.app.push_screen(DetailsScreen(job, list(logs), self.table.probed.get(job.id)))

    # -- models and memory --------------------------------------------------------------
    def action_unload(self) -> None:
        """Ask which model to unload; pending until the running stage ends."""
        from .dialogs import UnloadScreen

        def chosen(kind: str | None) -> None:
            if not kind:
                return
            self.engine.unload(kind)
            kinds = BOTH_MODELS if kind == "all" else (kind,)
            self._asked(pending=kinds if self._job_running() else ())

        self.app.push_screen(UnloadScreen(), chosen)

    def action_release_gpu(self) -> None:
        """Pause, unload every model, clean the allocator; bytes are reported as they come back."""
        self.engine.release_gpu()
        self.paused = True
        running = self._job_running()
        self._asked(
            EngineState.PAUSING if running else EngineState.PAUSED, BOTH_MODELS if running else ()
        )
        self.notify(
            "Pausing, unloading every model and ending the workers: all their memory"
            + (", CUDA contexts included," if self.memory.on_gpu else "")
            + " goes back",
            title="Release GPU" if self.memory.on_gpu else "Release",
            timeout=4,
        )

    def action_workers(self) -> None:
        """One worker alone: pause, resume or release it (screens/workers.py)."""
        from .workers import WorkersScreen

        rows = [(entry, row.event.state) for entry, row in sorted(self.memory.worker_rows.items())]
        if not rows:
            self.notify("No worker runs yet: one starts with the first job", severity="warning")
            return

        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                entry, order = answer
                self.engine.worker_order(entry, order)
                self.notify(f"{order} the worker on {entry}", title="One worker", timeout=4)

        self.app.push_screen(WorkersScreen(rows), chosen)

    def action_settings(self) -> None:
        """Edit the settings that apply to jobs not started yet."""
        from .settings import SettingsScreen

        self.app.push_screen(SettingsScreen(self.engine))
