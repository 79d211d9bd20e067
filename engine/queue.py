"""The job queue on top of the store: adding (and re-adding), order, cancel, retry, the
next runnable job, and other workers' jobs; plus the one rule for moving a job."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import orders
from .commands import Where
from .events import Event, JobChanged, JobRemoved, QueueReordered
from .jobs import Job, JobState, Stage
from .options import WriteOptions
from .outputs import (
    choose_base,
    content_fingerprint,
    done_key,
    output_folder,
    output_targets,
    outputs_current,
)
from .queue_adding import Adding
from .queue_shared import SharedQueue, _locked
from .settings import Settings
from .store import HeldElsewhere, LeaseLost, Store

Log = Callable[..., None]  # (level, message, job_id=None)
_AFRESH: dict[str, Any] = {"error": None, "progress": 0.0, "stage": None, "stage_times": ()}


def reorder(order: list[int], job_id: int, where: Where) -> list[int]:
    """`order` with `job_id` moved one place up or down, or to the top or bottom.

    An id that is not in `order` leaves it as it is (a copy). The engine and the job table
    both use this, so a key press shows at once exactly where the engine will put the job.
    """
    if job_id not in order:
        return list(order)
    rest = list(order)
    index = rest.index(job_id)
    rest.pop(index)
    target = {
        "up": max(0, index - 1),
        "down": min(len(rest), index + 1),
        "top": 0,
        "bottom": len(rest),
    }[where]
    rest.insert(target, job_id)
    return rest


def base_for(
    store: Store, log: Log, job: Job, settings: Settings, taken: set[str] | None = None
) -> str:
    """The job's output base under `settings`: kept while the folder is the same. `taken`:
    the bases in use, when the caller holds them already (a batch of re-adds)."""
    path = Path(job.path)
    write = WriteOptions.of(settings)
    folder = output_folder(path, write)
    parent = Path(job.output_base or "").parent
    if job.output_base and (parent == folder or (settings.output_dir and parent.parent == folder)):
        return job.output_base
    if taken is None:
        taken = store.output_bases()
    base, note = choose_base(path, write, taken - {job.output_base})
    taken.add(base)
    if note:
        log("warning", note, job.id)
    return base


def outputs_are_current(store: Store, job: Job, settings: Settings, base: str) -> bool:
    try:
        fingerprint = content_fingerprint(Path(job.path))
    except OSError:
        return False  # the run will say what is wrong with the input
    targets = output_targets(base, WriteOptions.of(settings))
    return outputs_current(
        store.done_record(job.id), fingerprint, done_key(settings, base), targets
    )


class JobQueue(Adding, SharedQueue):
    """The jobs this worker sees, in queue order, on top of the shared store.

    The engine thread, the lanes and the heartbeat (jobs it freed from dead holders) change
    it, one change at a time (`_locked`); `jobs()` and `job()` are safe from any thread. Every
    change is committed to the store first, then published, so the store is the truth
    after a crash. Jobs another worker runs are followed from the store (`refresh_foreign`).
    """

    def __init__(self, store: Store, publish: Callable[[Event], None], log: Log) -> None:
        self.store = store
        self._publish = publish
        self._log = log
        self._lock = threading.RLock()
        self._jobs: dict[int, Job] = {}
        self.active: set[int] = set()  # the jobs this engine runs now (one per worker)
        self.cancelled: set[int] = set()  # running jobs that stop at their next safe point
        self.asked: set[int] = set()  # jobs with an order of ours waiting for their holder
        self._last_refresh = 0.0

    # -- reading (any thread) ------------------------------------------------------------
    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: (j.position, j.id))

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def has_work(self) -> bool:
        return any(j.state.runnable for j in self.jobs())

    def busy(self) -> bool:
        """Something here runs or waits, or an order of ours waits for another process."""
        return bool(self.asked) or any(
            j.state == JobState.RUNNING or j.state.runnable for j in self.jobs()
        )

    # -- changes -------------------------------------------------------------------------
    @_locked
    def open(self, whole: bool) -> None:
        """Say what opening the state file found; with `whole`, take the saved queue into
        view (a plain `subq run` sees only what it adds)."""
        store = self.store
        if store.moved_aside:
            self._log(
                "warning",
                f"state file was corrupt; moved aside to {store.moved_aside}"
                " and started a new queue",
            )
        for note in store.migration_notes:
            self._log("info", note)
        for job_id in store.recover_stale():
            self._log("info", f"job {job_id} was interrupted by a crash; it will resume")
        if whole:
            with self._lock:
                self._jobs = {j.id: j for j in store.jobs()}

    @_locked
    def change(self, job: Job, state: JobState, **changes: Any) -> Job:
        """Commit first, then publish: the store is the truth after a crash. A job this
        engine runs is written as its lease holder (LeaseLost if it was taken); any other
        job only while no other live process holds it (HeldElsewhere)."""
        new = job.moved_to(state, **changes)
        self.store.save(new, holder=job.id in self.active)
        self._put(new)
        self._publish(JobChanged(job=new, previous=job.state))
        return new

    def change_current(self, job: Job, state: JobState, **changes: Any) -> Job:
        """`change`, applied to the job as this queue holds it now (progress included)."""
        return self.change(self.job(job.id) or job, state, **changes)

    @_locked
    def set_progress(self, job_id: int, fraction: float, stage: Stage) -> None:
        """In memory only: progress is published, and committed with the next change."""
        with self._lock:
            current = self._jobs.get(job_id)
            if current is not None:
                self._jobs[job_id] = dataclasses.replace(current, progress=fraction, stage=stage)

    def _put(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job

    def _forget(self, job_id: int) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
        self._publish(JobRemoved(job_id=job_id))

    # -- orders --------------------------------------------------------------------------
    def _find(self, path: str) -> Job | None:
        for job in self.jobs():
            if job.path == path:
                return job
        return self.store.latest_for_path(path)

    def _readd(self, job: Job, settings: Settings, taken: set[str] | None = None) -> None:
        """The same file again: resume, keep or redo it, never add a duplicate.

        The new request's output folder, formats and languages win: a finished job whose
        outputs are not all there as written (deleted, moved to another --output-dir, other
        formats) is queued again, and its stored transcript writes them without transcribing.
        """
        in_view = self.job(job.id) is not None
        base = base_for(self.store, self._log, job, settings, taken)
        if (
            job.state in (JobState.DONE, JobState.SKIPPED)
            and not settings.force
            and outputs_are_current(self.store, job, settings, base)
        ):
            note = "already done"
        elif (job.settings, job.output_base) == (settings, base) and (
            job.state.runnable or job.state == JobState.RUNNING
        ):
            note = "already in the queue"
        else:
            note = "already in the queue" if job.state.runnable else "queued again"
            new = job.moved_to(
                job.state if job.state.runnable else JobState.QUEUED,
                settings=settings,
                output_base=base,
                **({} if job.state.runnable else _AFRESH),
            )
            try:
                if job.state == JobState.RUNNING:
                    raise HeldElsewhere(job.worker or "another process")
                self.store.save(new, holder=False)
                job = new
            except HeldElsewhere as holder:
                self.ask(job, orders.READD, str(holder), settings=settings, output_base=base)
                return
        if in_view:
            self._log("info", f"{job.path}: {note}", job.id)
        elif note != "queued again":
            self._log("info", f"{job.path}: {note} (from the saved queue)", job.id)
        self._put(job)
        self._publish(JobChanged(job=job))

    @_locked
    def move(self, job_id: int, where: Where) -> None:
        jobs = {j.id: j for j in self.jobs()}
        if job_id not in jobs:
            return
        order = [jobs[i] for i in reorder(list(jobs), job_id, where)]
        changed = [
            dataclasses.replace(j, position=float(i + 1), ordered=True) for i, j in enumerate(order)
        ]
        self.store.save_positions(changed)
        with self._lock:
            for j in changed:
                self._jobs[j.id] = j
        self._publish(QueueReordered(order=tuple(j.id for j in changed)))

    @_locked
    def cancel(self, job_id: int) -> None:
        job = self.job(job_id)
        if job is None or job.state.finished:
            return
        if job_id in self.active:
            self.cancelled.add(job_id)
            self._log("info", f"{job.name}: cancelling at the next safe point", job_id)
            return
        try:  # its checkpoint stays: a retry resumes where it was (issue 25.8)
            self.change(job, JobState.CANCELLED, stage=None)
        except HeldElsewhere as holder:
            self.ask(job, orders.CANCEL, str(holder))

    @_locked
    def remove(self, job_id: int) -> None:
        if job_id in self.active:
            self.cancel(job_id)
            self._log("info", "a running job is cancelled first; remove it once it stops", job_id)
            return
        job = self.job(job_id)
        if job is not None:
            try:
                self.store.delete(job_id)
            except HeldElsewhere as holder:
                self.ask(job, orders.REMOVE, str(holder))
                return
            self._forget(job_id)

    @_locked
    def retry(self, job_id: int) -> None:
        job = self.job(job_id)
        if job and job.state.finished:
            force = job.state in (JobState.DONE, JobState.SKIPPED)
            settings = dataclasses.replace(job.settings, force=force or job.settings.force)
            kept = job.resume_from / job.duration if job.resume_from and job.duration else 0.0
            try:
                self.change(
                    job,
                    JobState.QUEUED,
                    error=None,
                    progress=0.0 if force else min(1.0, kept),
                    stage=None,
                    stage_times=(),
                    settings=settings,
                )
            except HeldElsewhere as holder:  # queued and started elsewhere meanwhile
                self._log("info", f"{job.name}: already runs in process {holder}", job_id)
                self._sync(job_id, self.store.job(job_id))

    @_locked
    def clear_finished(self) -> None:
        """Finished jobs leave for good; what they wrote stays known (the `written` table)."""
        for job in self.jobs():
            if job.state.finished and job.id not in self.active:
                self.remove(job.id)

    @_locked
    def resume_paused(self) -> None:
        for job in self.jobs():
            if job.state == JobState.PAUSED and job.id not in self.active:
                with contextlib.suppress(HeldElsewhere):  # resumed elsewhere meanwhile
                    self.change(job, JobState.QUEUED)

    @_locked
    def update_settings(self, settings: Settings) -> None:
        """New settings reach the jobs of this batch that have not started yet: those this
        process queued, or whose queuing process is gone (a saved queue), never the jobs a
        live `subq run` elsewhere queued with its own options."""
        mine = self.store.batch_of_live_others()
        for job in self.jobs():
            fresh = job.state == JobState.QUEUED and job.progress == 0 and not job.resume_from
            if fresh and job.id not in mine:
                base = base_for(self.store, self._log, job, settings)
                with contextlib.suppress(HeldElsewhere):  # started elsewhere meanwhile
                    self.change(job, JobState.QUEUED, settings=settings, output_base=base)

    # -- the running job -------------------------------------------------------------------
    @property
    def running(self) -> int | None:
        """One running job's id (the first started), or None."""
        return min(self.active, default=None)

    @_locked
    def start(self, job: Job) -> Job:
        self.active.add(job.id)
        self.cancelled.discard(job.id)
        return self.change(job, JobState.RUNNING, stage=Stage.PROBE, error=None)

    @_locked
    def finish(self, job: Job, state: JobState, changes: dict[str, Any]) -> None:
        """Write the job's end as its holder, let go of it, then carry out the orders other
        processes left for it meanwhile. A lost lease writes nothing: the job is another's."""
        try:
            self.change_current(job, state, **changes)
        except LeaseLost as lost:
            self._log("warning", f"{job.name}: {lost}; stopped without writing", job.id)
            self._sync(job.id, self.store.job(job.id))
        finally:
            self.store.release(job.id)
            self.active.discard(job.id)
            self.cancelled.discard(job.id)
        self.carry_out(job.id)
