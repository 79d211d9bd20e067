"""The engine as one job sees it: the pipeline's `JobContext`, and running a job through it.

The pipeline reaches the engine only through these methods. Safe points apply waiting
orders (through `drain`) and stop the job when it was paused, cancelled, shut down, or its
lease was lost; stages are committed as they start; progress is published with its ETA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from . import memory
from . import worker_protocol as wp
from .cluster import ClusterError
from .events import Event, StageProgressed
from .jobs import Job, JobState, Stage, clock
from .models import ModelManager, NeedsMemory, WorkerDied
from .orders import CANCEL, REMOVE, Order
from .outputs import content_fingerprint
from .pipeline import Outcome, Pipeline, StopRequested
from .queue import JobQueue
from .store import LeaseLost, Store
from .subtitles import remove_live_temps

log = logging.getLogger("subq.engine")
# Seconds between lease renewals, which also read the orders other processes left for the
# running jobs: a cancel from another terminal reaches the job within 2 s (a renewal is
# one small transaction; a lease is stale after leases.LEASE_TIMEOUT).
HEARTBEAT = 1.0
EARLY_DEATHS = 3  # workers that die before taking a job's call, before it is blamed anyway
MEMORY_RECHECK = 3.0  # seconds between free-memory checks while a job waits for room


class EngineContext:
    def __init__(
        self,
        queue: JobQueue,
        models: ModelManager,
        publish: Callable[[Event], None],
        log: Callable[..., None],
        *,
        unload_pending: Callable[[list[str]], None],
        paused: Callable[[], bool],
        stopping: threading.Event,
        nvml: Callable[[], memory.Nvml | None],
        cancel: Callable[[int], None] = lambda job_id: None,
    ) -> None:
        self.queue = queue
        self.store: Store = queue.store
        self.models = models
        self._publish = publish
        self.log = log  # (level, message, job_id=None)
        self.unload_pending = unload_pending  # pending unloads on these entries, at a stage end
        self._paused = paused
        self._stopping = stopping
        self._nvml = nvml
        # an order from another process to stop a running job becomes this engine's cancel
        self.heartbeat = Heartbeat(
            self.store, lambda: set(queue.active), stopping, cancel, queue.follow_freed
        )
        self.start_anyway: set[int] = set()
        self.oom_count = 0
        self.crashes: dict[int, int] = {}  # job id -> its workers' deaths in a row
        self.early_deaths: dict[int, int] = {}  # job id -> deaths before a call was taken
        self.entry: dict[int, str] = {}  # running job id -> the worker entry it runs on
        # job id -> the cluster nodes that could not read its file: written by the lane
        # threads that run jobs, read by the engine thread as it hands jobs out; one lock
        self.unseen: dict[int, set[str]] = {}
        self._unseen_lock = threading.Lock()

    def run(self, job: Job, entry: str | None = None) -> None:
        """Run one claimed job to its end (done, failed, paused, cancelled or interrupted),
        or, if its worker dies, back to the queue to resume from its last checkpoint."""
        self.heartbeat.lost.pop(job.id, None)
        job = self.queue.start(job)
        entry = entry or memory.device_entries(job.settings.device, self._nvml())[0]
        self.entry[job.id] = entry
        self.models.pool.set_busy(entry, job.id)
        try:
            try:
                fingerprint, unseen = self._unseen(job, entry)
                if unseen:  # a cluster node without the file
                    final = self._not_here(job, entry, unseen)
                else:
                    final = Pipeline(self, job, entry, fingerprint).run()
            except WorkerDied as died:
                final = self._worker_died(job, died)
            except ClusterError:  # the whole cluster is gone: the batch stops, the job waits
                self.queue.finish(job, JobState.INTERRUPTED, {"stage": None})
                raise
            except LeaseLost as lost:  # another process runs it now: write nothing more
                final = Outcome(JobState.INTERRUPTED, {"error": str(lost)})
            else:
                self.crashes.pop(job.id, None)
                self.early_deaths.pop(job.id, None)
            self.queue.finish(job, final.state, final.changes)
            if final.state != JobState.QUEUED:
                with self._unseen_lock:
                    self.unseen.pop(job.id, None)  # a retry asks every node again
        finally:
            self.queue.active.discard(job.id)
            self.start_anyway.discard(job.id)
            self.entry.pop(job.id, None)
            self.models.pool.set_busy(entry, None)

    def _unseen(self, job: Job, entry: str) -> tuple[str, str | None]:
        """Why the cluster node of `entry` cannot run `job` (it reads another file or none at
        its path), checked before the job's first window there; None on this machine. With
        the content's fingerprint the check made, so the pipeline does not hash it again."""
        cluster = self.models.pool.cluster
        if cluster is None or not cluster.owns(entry) or not os.path.isfile(job.path):
            return "", None  # a missing file fails in the pipeline, with its usual message
        fingerprint = content_fingerprint(Path(job.path))
        return fingerprint, cluster.problem(entry, job.path, fingerprint)

    def _not_here(self, job: Job, entry: str, why: str) -> Outcome:
        """A node that cannot read the file hands it back for another node to try (some
        clusters mount the media on some nodes only); it fails once no live node can."""
        cluster = self.models.pool.cluster
        assert cluster is not None
        with self._unseen_lock:
            tried = self.unseen.setdefault(job.id, set())
            tried.add(cluster.node_of(entry))
            untried, others = cluster.alive_nodes() - tried, len(tried) - 1
        if untried:
            self.log("warning", f"{job.name}: {why}; another node will try it", job.id)
            return Outcome(JobState.QUEUED, {"stage": None, "error": None})
        nor = f" (nor could {others} other node(s))" if others else ""
        return Outcome(JobState.FAILED, {"error": f"{job.name}: {why}{nor}"})

    def unseen_at(self, entry: str) -> set[int]:
        """The jobs whose file the node of `entry` could not read: not handed to it again
        while a live node has not tried them. Once every live one has (the others left),
        it may take them again, and the run fails them in one line (or reads them, if the
        mount came back) instead of leaving them queued for ever. The notes of jobs no
        longer waiting (cancelled, removed) go, so a retry asks every node again."""
        cluster = self.models.pool.cluster
        with self._unseen_lock:
            if not self.unseen or cluster is None or not cluster.owns(entry):
                return set()
        waiting = {j.id for j in self.queue.jobs() if not j.state.finished}
        node, alive = cluster.node_of(entry), cluster.alive_nodes()
        with self._unseen_lock:
            for job_id in [j for j in self.unseen if j not in waiting]:
                del self.unseen[job_id]
            return {j for j, nodes in self.unseen.items() if node in nodes and not alive <= nodes}

    def _worker_died(self, job: Job, died: WorkerDied) -> Outcome:
        """One window lost: the job goes back to the queue with its last stored checkpoint;
        a file that kills its worker twice in a row fails, so it cannot loop forever."""
        held = self.queue.job(job.id) or job
        _, checkpoint = self.store.saved_checkpoint(job.id)
        at = float(checkpoint.get("seek", 0.0)) if checkpoint else 0.0
        stage_times = tuple(held.stage_times)
        requeue = Outcome(
            JobState.QUEUED,
            {"stage": None, "resume_from": at, "stage_times": stage_times, "error": None},
        )
        early = self.early_deaths[job.id] = self.early_deaths.get(job.id, 0) + 1
        if not died.blamed and early <= EARLY_DEATHS:  # it never took the job's call
            self.log("warning", f"{job.name}: {died}, before it took the job; requeued", job.id)
            return requeue
        what = died.what
        if what.startswith("died ("):
            what = "died (" + died.how.split(" (")[0] + ")"  # "signal 9", "exit status 70"
        what = f"worker on {died.entry} {what} at {clock(at)}"
        count = self.crashes[job.id] = self.crashes.get(job.id, 0) + 1
        if count >= 2:
            self.crashes.pop(job.id, None)
            message = f"{job.name}: {what}; it killed its worker twice in a row, so it failed"
            self.log("error", message, job.id)
            self.models.pool.publish(died.entry, "died", note=f"{what}; failed")
            return Outcome(
                JobState.FAILED, {"error": message, "stage": None, "stage_times": stage_times}
            )
        self.log("warning", f"{job.name}: {what}; resumed", job.id)
        self.models.pool.publish(died.entry, "died", note=f"{what}; resumed")
        return requeue

    def emergency_stop(self) -> None:
        """From a signal handler, just before a hard exit: commit and remove temp files."""
        remove_live_temps()
        running = sorted(self.queue.active)
        if running:
            with contextlib.suppress(Exception):
                self.store.mark_interrupted_now(running)

    def interrupt(self, job_ids: set[int] | None = None, reason: str = "pause") -> None:
        """Ask the workers running these jobs (None: all) to stop at their next window: a
        pause, cancel or shutdown then costs at most one window. The job's own safe point
        says why (paused, cancelled, interrupted); a worker between calls ignores it."""
        for job_id, entry in list(self.entry.items()):
            worker = self.models.pool.slot(entry).worker
            if worker is not None and (job_ids is None or job_id in job_ids):
                worker.send(wp.Stop(str(job_id), reason))

    # -- JobContext ------------------------------------------------------------------------
    def safe_point(self, job: Job) -> None:
        """Raise StopRequested if the job must stop here. The engine thread applies the
        orders (pause, cancel, unload...) as they come; a job's lane only reads them here."""
        if self._stopping.is_set():
            raise StopRequested(JobState.INTERRUPTED, "stopped; will resume from here")
        if lost := self.heartbeat.lost.get(job.id):
            self.log("warning", f"{job.name}: {lost}", job.id)
            raise StopRequested(JobState.INTERRUPTED, lost)
        self.queue.refresh_foreign(every=2.0)
        if job.id in self.queue.cancelled:
            raise StopRequested(JobState.CANCELLED, "cancelled")
        entry = self.entry.get(job.id)
        if entry is not None and entry in self.models.pool.held:
            raise StopRequested(JobState.QUEUED, f"worker on {entry} paused; back in the queue")
        if self._paused():
            raise StopRequested(JobState.PAUSED, "paused")

    def enter_stage(self, job: Job, stage: Stage) -> Job:
        self.safe_point(job)
        entry = self.entry.get(job.id)
        if entry is not None:
            self.unload_pending([entry])
        return self.queue.change_current(job, JobState.RUNNING, stage=stage, progress=0.0)

    def progress(
        self,
        job: Job,
        stage: Stage,
        fraction: float,
        started: float,
        audio_seconds: float | None,
        base: float = 0.0,
    ) -> None:
        self.queue.set_progress(job.id, fraction, stage)
        event = StageProgressed.measure(job.id, stage, fraction, started, audio_seconds, base)
        self._publish(dataclasses.replace(event, device=self.entry.get(job.id)))

    def oom(self, job: Job, message: str) -> None:
        self.oom_count += 1
        self.log("warning", f"{job.name}: {message} (OOM #{self.oom_count})", job.id)

    def wait_for_memory(self, job: Job, error: NeedsMemory) -> bool:
        """Show "waiting for GPU memory" and re-check; True when the user said start anyway."""
        self.queue.change_current(job, JobState.RUNNING, stage=Stage.WAITING, error=str(error))
        self.log("warning", f"{job.name}: {error}", job.id)
        deadline = time.monotonic() + MEMORY_RECHECK
        while time.monotonic() < deadline:
            self.safe_point(job)
            if job.id in self.start_anyway:
                return True
            time.sleep(0.1)
        return False

    def started_anyway(self, job_id: int) -> bool:
        return job_id in self.start_anyway

    def nvml(self) -> memory.Nvml | None:
        return self._nvml()


class Heartbeat:
    """Keeps the running jobs' leases fresh. Without it another engine may take a job, so
    a lease that cannot be renewed (or was taken) is noted in `lost`, and that job stops at
    its next safe point."""

    def __init__(
        self,
        store: Store,
        running: Callable[[], set[int]],
        stopping: threading.Event,
        cancel: Callable[[int], None],
        freed: Callable[[list[int]], None],
    ) -> None:
        self._store = store
        self._running = running
        self._stopping = stopping
        self._cancel = cancel
        self._freed = freed  # jobs of dead holders it freed, for the queue to show
        self._cancelled: set[int] = set()  # jobs whose stop order was handed on
        self.lost: dict[int, str] = {}  # job id -> why its lease is gone

    def start(self) -> None:
        threading.Thread(target=self._run, name="subq-heartbeat", daemon=True).start()

    def _run(self) -> None:
        while not self._stopping.wait(HEARTBEAT):
            running = self._running()
            if not running:
                continue
            found: list[Order] = []
            try:
                renewed, found, freed = self._store.heartbeat_and_orders(sorted(running))
                held = set(renewed)
            except Exception as exc:
                held, reason = set(), f"cannot renew its lease: {exc}"
            else:
                reason = "its lease was taken by another worker"
                if freed:
                    self._freed(freed)
            for order in found:  # cancel and remove stop the job; the rest wait for its end
                if order.kind in (CANCEL, REMOVE) and order.job_id not in self._cancelled:
                    self._cancelled.add(order.job_id)
                    self._cancel(order.job_id)
            self._cancelled &= running
            for job_id in running - held:
                if job_id in self._running():
                    self.lost[job_id] = f"{reason}; it stops here and resumes later"
