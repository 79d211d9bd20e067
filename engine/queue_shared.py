"""The part of the queue that other processes share: picking the next job to claim,
following jobs another process runs, and orders for them (orders.py).

An order for a job held by another live process is left in the state file. Its holder
reads it with its heartbeat (within HEARTBEAT seconds) and stops the job at its next safe
point; when the job ends there, `carry_out` does the rest (removes it, or queues it again
with the new outputs). If the holder dies first, whoever claims the job next carries the
orders out before running it. The process that asked keeps the job busy in its own view
while its order waits, so a `subq run` never exits before what it asked for was done; if
the job ends and nobody took its order, it carries the order out itself.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any

from . import orders
from .events import Event, JobChanged, JobRemoved
from .jobs import Job, JobState
from .scheduling import longest_first
from .settings import Settings
from .store import HeldElsewhere, Store

Log = Callable[..., None]  # (level, message, job_id=None)


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """One change at a time: the engine thread applies orders while lanes start, advance
    and finish their jobs and the heartbeat shows the jobs it freed, and a read-modify-write
    (a move) must not undo a lane's change."""

    @functools.wraps(method)
    def locked(self: SharedQueue, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


class SharedQueue:
    """Mixed into JobQueue; its lock and fields are JobQueue's (same ownership rule)."""

    store: Store
    active: set[int]
    _lock: threading.RLock
    _jobs: dict[int, Job]
    _last_refresh: float
    _log: Log
    _publish: Callable[[Event], None]
    asked: set[int]  # jobs with an order of ours that waits in the state file

    def jobs(self) -> list[Job]:
        raise NotImplementedError

    def job(self, job_id: int) -> Job | None:
        raise NotImplementedError

    def change(self, job: Job, state: JobState, **changes: Any) -> Job:
        raise NotImplementedError

    def _readd(self, job: Job, settings: Settings) -> None:
        raise NotImplementedError

    def _forget(self, job_id: int) -> None:
        raise NotImplementedError

    # -- asking another process ------------------------------------------------------
    def ask(self, job: Job, kind: str, holder: str, **order: Any) -> None:
        """Leave an order for the process that runs `job` (this one, or a live other), and
        say so."""
        self.store.add_order(job.id, kind, **order)
        self.asked.add(job.id)
        what = {orders.CANCEL: "cancelled", orders.REMOVE: "removed"}.get(kind)
        tail = f"it is {what} there" if what else "its new outputs are written after that"
        where = "here" if job.id in self.active else f"in process {holder}"
        self._log("info", f"{job.name}: running {where}; {tail}", job.id)

    # -- picking work and following other workers ------------------------------------
    @_locked
    def next_runnable(
        self, spread: bool = False, avoid: AbstractSet[int] = frozenset()
    ) -> Job | None:
        """The first runnable job this worker could claim, fresh from the store, with the
        orders left for it carried out first. `spread` (several workers share the batch):
        the longest file of the one add at the head of the queue goes first (scheduling.py).
        `avoid`: jobs this worker must not take (its cluster node cannot read their files)."""
        self.refresh_foreign()  # a dead worker's job is taken up in queue order, first
        busy = self.active | avoid
        waiting = [j for j in self.jobs() if j.state.runnable and j.id not in busy]
        for job in longest_first(waiting) if spread else waiting:
            holder = self.store.claim(job.id)
            fresh = self.store.job(job.id)
            if holder is not None or fresh is None or not fresh.state.runnable:
                if holder is None:
                    self.store.release(job.id)
                self._sync(job.id, fresh)
                continue
            if self.store.pending_orders([job.id]):  # its last holder died before them
                self.store.release(job.id)
                self.carry_out(job.id)
                continue
            return fresh
        return None

    def _sync(self, job_id: int, fresh: Job | None) -> None:
        with self._lock:
            if fresh is None:
                self._jobs.pop(job_id, None)
            else:
                self._jobs[job_id] = fresh
        self._publish(JobChanged(job=fresh) if fresh else JobRemoved(job_id=job_id))

    @_locked
    def refresh_foreign(self, every: float = 0.0) -> None:
        """Jobs another worker runs: follow their state from the shared store, and free the
        jobs of workers that are gone; follow our own orders until someone took them."""
        now = time.monotonic()
        if now - self._last_refresh < every:
            return
        self._last_refresh = now
        for job in self.jobs():
            followed = job.state == JobState.RUNNING or job.id in self.asked
            if followed and job.id not in self.active:
                fresh = self.store.job(job.id)
                if fresh is None or (fresh.state, fresh.stage, fresh.settings) != (
                    job.state,
                    job.stage,
                    job.settings,
                ):
                    self._sync(job.id, fresh)
        self.follow_freed(self.store.recover_stale())
        if self.asked:
            self._follow_asked()

    @_locked
    def follow_freed(self, job_ids: list[int]) -> None:
        """Show the jobs freed from dead holders (here or by the heartbeat) as they now are."""
        for job_id in job_ids:
            if self.job(job_id) is not None:
                self._sync(job_id, self.store.job(job_id))

    def _follow_asked(self) -> None:
        waiting = {o.job_id for o in self.store.pending_orders(sorted(self.asked)) if o.mine}
        for job_id in self.asked - waiting:
            self.asked.discard(job_id)
        for job_id in waiting:
            fresh = self.store.job(job_id)
            if fresh is not None and fresh.state != JobState.RUNNING:
                self.carry_out(job_id)  # it ended and nobody took our order: ours to do

    def carry_out(self, job_id: int) -> None:
        """Do what other processes asked for this job, now that it does not run."""
        for order in self.store.take_orders(job_id):
            self.asked.discard(job_id)
            fresh = self.store.job(job_id)
            if fresh is None:
                self._sync(job_id, None)
                return
            self._sync(job_id, fresh)
            try:
                if order.kind == orders.REMOVE:
                    self.store.delete(job_id)
                    self._forget(job_id)
                    return
                if order.kind == orders.CANCEL and not fresh.state.finished:
                    self.change(fresh, JobState.CANCELLED, stage=None)
                elif order.kind == orders.READD and order.settings is not None:
                    self._readd(fresh, order.settings)
            except HeldElsewhere:  # claimed meanwhile: its new holder does it
                self.store.add_order(job_id, order.kind, order.settings, order.output_base)
                return
