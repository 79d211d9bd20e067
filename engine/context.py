"""The engine as one job sees it: the pipeline's `JobContext`, and running a job through it.

The pipeline reaches the engine only through these methods. Safe points apply waiting
orders (through `drain`) and stop the job when it was paused, cancelled, shut down, or its
lease was lost; stages are committed as they start; progress is published with its ETA.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from . import memory
from .events import Event, StageProgressed
from .jobs import Job, JobState, Stage
from .models import ModelManager, NeedsMemory
from .pipeline import Pipeline, StopRequested
from .prefetch import AudioPrefetch
from .queue import JobQueue
from .store import Store
from .subtitles import remove_live_temps

log = logging.getLogger("subq.engine")
HEARTBEAT = 3.0  # seconds between lease renewals; a lease is stale after LEASE_TIMEOUT
MEMORY_RECHECK = 3.0  # seconds between free-memory checks while a job waits for room


class EngineContext:
    def __init__(
        self,
        queue: JobQueue,
        models: ModelManager,
        publish: Callable[[Event], None],
        log: Callable[..., None],
        *,
        drain: Callable[[], None],
        unload_pending: Callable[[], None],
        paused: Callable[[], bool],
        stopping: threading.Event,
        nvml: Callable[[], memory.Nvml | None],
    ) -> None:
        self.queue = queue
        self.store: Store = queue.store
        self.models = models
        self._publish = publish
        self.log = log  # (level, message, job_id=None)
        self._drain = drain
        self.unload_pending = unload_pending  # models' pending unloads, state republished
        self._paused = paused
        self._stopping = stopping
        self._nvml = nvml
        self.heartbeat = Heartbeat(self.store, lambda: queue.running, stopping)
        self.prefetch = AudioPrefetch()
        self.start_anyway: set[int] = set()
        self.oom_count = 0

    def run(self, job: Job) -> None:
        """Run one claimed job to its end (done, failed, paused, cancelled or interrupted)."""
        self.heartbeat.lost = None
        job = self.queue.start(job)
        try:
            final = Pipeline(self, job).run()
            self.queue.finish(job, final.state, final.changes)
        finally:
            self.queue.running = None
            self.start_anyway.discard(job.id)

    def emergency_stop(self) -> None:
        """From a signal handler, just before a hard exit: commit and remove temp files."""
        remove_live_temps()
        running = self.queue.running
        if running is not None:
            with contextlib.suppress(Exception):
                self.store.mark_interrupted_now([running])

    # -- JobContext ------------------------------------------------------------------------
    def safe_point(self, job: Job) -> None:
        """Apply waiting commands; raise StopRequested if the job must stop here."""
        self._drain()
        if self._stopping.is_set():
            raise StopRequested(JobState.INTERRUPTED, "stopped; will resume from here")
        if lost := self.heartbeat.lost:
            self.log("warning", f"{job.name}: {lost}", job.id)
            raise StopRequested(JobState.INTERRUPTED, lost)
        self.queue.refresh_foreign(every=2.0)
        if self.queue.cancel_requested:
            raise StopRequested(JobState.CANCELLED, "cancelled")
        if self._paused():
            raise StopRequested(JobState.PAUSED, "paused")

    def enter_stage(self, job: Job, stage: Stage) -> Job:
        self.safe_point(job)
        self.unload_pending()
        return self.queue.change_current(job, JobState.RUNNING, stage=stage, progress=0.0)

    def progress(
        self, job: Job, stage: Stage, fraction: float, started: float, audio_seconds: float | None
    ) -> None:
        self.queue.set_progress(job.id, fraction, stage)
        self._publish(StageProgressed.measure(job.id, stage, fraction, started, audio_seconds))

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

    def audio(self, job: Job) -> np.ndarray:
        return self.prefetch.take(job.path)

    def prefetch_next(self, job: Job) -> None:
        """Decode the next runnable job's audio while this one transcribes."""
        order = [j for j in self.queue.jobs() if j.state.runnable and j.id != job.id]
        if order:
            self.prefetch.start(order[0].path, keep=job.path)

    def nvml(self) -> memory.Nvml | None:
        return self._nvml()


class Heartbeat:
    """Keeps the running job's lease fresh. Without it another worker may take the job, so
    a lease that cannot be renewed (or was taken) is noted in `lost`, and the job stops at
    its next safe point."""

    def __init__(
        self, store: Store, running: Callable[[], int | None], stopping: threading.Event
    ) -> None:
        self._store = store
        self._running = running
        self._stopping = stopping
        self.lost: str | None = None  # why the running job's lease is gone, if it is

    def start(self) -> None:
        threading.Thread(target=self._run, name="subq-heartbeat", daemon=True).start()

    def _run(self) -> None:
        while not self._stopping.wait(HEARTBEAT):
            running = self._running()
            if running is None:
                continue
            try:
                held = self._store.heartbeat([running])
            except Exception as exc:
                held, reason = [], f"cannot renew its lease: {exc}"
            else:
                reason = "its lease was taken by another worker"
            if running not in held and self._running() == running:
                self.lost = f"{reason}; it stops here and resumes later"
