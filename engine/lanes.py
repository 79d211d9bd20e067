"""Lanes: one thread per worker entry, each running one job at a time on its worker.

The engine thread keeps the queue and the orders; it hands a claimed job to a free lane and
goes on (jobs go to the next free worker). A lane runs the job's pipeline and spawns its
worker, so the worker lives as long as the lane's thread (PR_SET_PDEATHSIG fires when the
spawning thread ends): lanes live as long as the engine. When a job ends the lane wakes the
engine thread, which picks the next job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from .jobs import Job
from .pool import DeviceChoice, WorkerPool

if TYPE_CHECKING:
    from .context import EngineContext
    from .memory import Nvml
    from .models import ModelManager
    from .settings import Settings

log = logging.getLogger("subq.engine")


class Lane:
    def __init__(self, entry: str, run: Callable[[Job, str], None], done: Callable[[], None]):
        self.entry = entry
        self._run = run
        self._done = done
        self._cond = threading.Condition()
        self._job: Job | None = None
        self._calls: list[Callable[[], None]] = []  # work the lane's thread must do (spawn)
        self._stop = False
        self.busy = False
        self.thread = threading.Thread(target=self._main, name=f"subq-lane-{entry}", daemon=True)
        self.thread.start()

    def give(self, job: Job) -> None:
        with self._cond:
            self.busy = True
            self._job = job
            self._cond.notify()

    def do(self, call: Callable[[], None]) -> None:
        """Run `call` on this lane's thread when it is free (start its worker ahead of time)."""
        with self._cond:
            self._calls.append(call)
            self._cond.notify()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.thread.join(timeout)

    def _main(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._calls and not self._stop:
                    self._cond.wait()
                if self._stop and self._job is None:
                    return
                job, self._job = self._job, None
                calls, self._calls = self._calls, []
            for call in calls:
                try:
                    call()
                except Exception:
                    log.exception("lane %s: a call failed", self.entry)
            if job is None:
                continue
            try:
                self._run(job, self.entry)
            except BaseException:
                pass
            finally:
                self.busy = False
                self._done()


class Lanes:
    """The engine's lanes, by entry name."""

    def __init__(self, run: Callable[[Job, str], None], done: Callable[[], None]) -> None:
        self._run = run
        self._done = done
        self.lanes: dict[str, Lane] = {}
        self.failure: BaseException | None = None
        self.choice = DeviceChoice()  # --device's entries, kept while workers run
        self.releasing: set[str] = set()  # held workers to end once idle (engine thread)

    def configure(self, entries: list[str]) -> None:
        for entry in entries:
            if entry not in self.lanes:
                self.lanes[entry] = Lane(entry, self._guarded, self._done)

    def _guarded(self, job: Job, entry: str) -> None:
        try:
            self._run(job, entry)
        except BaseException as exc:  # the engine thread raises it (a StateError stops all)
            self.failure = exc
            raise

    def entries(self, settings: Settings, models: ModelManager, nvml: Nvml | None) -> list[str]:
        """The worker entries for --device (DeviceChoice: decided when no worker runs, kept
        while one does), or the --cluster's GPUs and nodes alive now, with a lane each;
        idle workers of entries no longer used end. A ClusterError stops the batch."""
        pool = models.pool
        wanted = settings.device
        if settings.cluster:  # connected once (seconds), on the engine thread
            wanted = ",".join(pool.use_cluster(settings.cluster).entries())
        devices, changed = self.choice.devices(wanted, nvml, bool(pool.pids()))
        entries = pool.configure(devices)  # "cpu,cpu": "cpu", "cpu#2"
        if changed:
            self.configure(entries)
            busy = set(self.busy())
            for entry in pool.entries():
                if entry not in entries and entry not in busy and pool.alive(entry):
                    models.unload_entry(entry, "no longer in --device")
        return entries

    def free(self, entries: list[str], held: AbstractSet[str] = frozenset()) -> list[str]:
        """Entries whose lane has no job, leaving out the `held` ones (a worker order)."""
        return [e for e in entries if e in self.lanes and not self.lanes[e].busy and e not in held]

    def order(self, entry: str, order: str, context: EngineContext) -> None:
        """A worker order (commands.WorkerOrder), on the engine thread. Pausing one worker
        stops its job at the next window and sends it back to the queue with its checkpoint
        (context.safe_point); releasing it also ends the worker once its job has stopped."""
        pool = context.models.pool
        if order == "resume":
            pool.held.discard(entry)
            self.releasing.discard(entry)
        else:
            pool.held.add(entry)
            if order == "release":
                self.releasing.add(entry)
            context.interrupt({job for job, on in context.entry.items() if on == entry})
            self.settle_held(context)
        if pool.alive(entry):
            pool.publish(entry, pool.state_of(entry), note=f"{order}d by order")

    def settle_held(self, context: EngineContext) -> None:
        """End the workers to release whose job has stopped (the engine thread's loop)."""
        for entry in sorted(self.releasing):
            if not (entry in self.lanes and self.lanes[entry].busy):
                self.releasing.discard(entry)
                context.models.unload_entry(entry, "released")

    def busy(self) -> list[str]:
        return [e for e, lane in self.lanes.items() if lane.busy]

    def wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        for lane in self.lanes.values():
            lane.stop(timeout)

    def prestart(
        self, entries: list[str], pool: WorkerPool, waiting: int, preload: tuple[str, ...]
    ) -> None:
        """Start the workers of up to `waiting` free entries, each on its lane's thread (the
        worker lives as long as that thread)."""
        for entry in self.free(entries, pool.held)[:waiting]:
            slot = pool.slot(entry)
            if pool.alive(entry) or slot.starting:
                continue
            slot.starting = True

            def start(entry: str = entry) -> None:
                try:
                    pool.start(entry, preload)
                finally:
                    pool.slot(entry).starting = False

            self.lanes[entry].do(start)
