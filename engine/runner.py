"""The engine: one background thread that owns the queue, the models and CUDA.

Control calls enqueue a command and return at once; the engine thread applies commands at
safe points (between jobs, between stages, and before every 30 s transcription window) in
one dispatch. Every state change is committed to SQLite before it is acted on, then
published as an event. Subscribers (the TUI, the headless printer) only ever receive events.

The rooms: the job queue (queue.py); one job's stages (pipeline.py), which see the engine
only as a `JobContext` (context.py: safe points, the lease heartbeat, the next job's
audio); the model manager, with keep-alive and pending unloads (models.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from . import commands as cmd
from . import logfile, memory
from .cluster import ClusterError
from .context import EngineContext
from .events import EngineState, EngineStateChanged, Event, LoadedModel, Subscribers
from .jobs import Job
from .lanes import Lanes
from .models import ModelManager, kinds_of
from .queue import JobQueue
from .settings import Settings, default_state_path
from .store import StateError, Store

log = logging.getLogger("subq.engine")


class Engine:
    """Runs jobs in a background thread; every public method is safe from any thread."""

    def __init__(
        self,
        settings: Settings | None = None,
        state_path: Path | None = None,
        *,
        whole_queue: bool = True,
        paused: bool = False,
        sample_memory: bool = True,
        memory_interval: float = 0.5,
    ) -> None:
        self.settings = (settings or Settings()).validate()
        self.store = Store(state_path or default_state_path())
        self.whole_queue = whole_queue
        self._inbox = cmd.Inbox()
        self._subscribers = Subscribers()
        self._publish = self._subscribers.publish
        self.log = self._subscribers.log
        self.queue = JobQueue(self.store, self._publish, self.log)
        self.models = ModelManager(self._publish, lambda: self.sampler.nvml)
        self.sampler = memory.MemorySampler(
            self._publish, interval=memory_interval, ours=self.models.pool.pids
        )
        self._sample_memory = sample_memory
        self._paused = paused
        self._release = False  # Release asked: end the workers once the job stops
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # a lane runs its job through the context (whose finally lets go of the job)
        self.lanes = Lanes(lambda job, entry: self.context.run(job, entry), self._inbox.wake)
        self.context = EngineContext(
            self.queue,
            self.models,
            self._publish,
            self.log,
            unload_pending=self._unload_pending,
            paused=lambda: self._paused,
            stopping=self._stopping,
            nvml=lambda: self.sampler.nvml,
            cancel=lambda job_id: self._inbox.send(cmd.Cancel(job_id)),
        )
        self.fatal: str | None = None  # why the engine thread stopped early, if it did
        self.models.worker_timeout = self.settings.worker_timeout or None
        self.state = EngineState.PAUSED if paused else EngineState.IDLE

    # -- public API: lifecycle --------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> None:
        self._subscribers.add(fn)

    def unsubscribe(self, fn: Callable[[Event], None]) -> None:
        self._subscribers.remove(fn)

    def start(self) -> None:
        logfile.attach()
        self.queue.open(whole=self.whole_queue)
        if self._sample_memory:
            self.sampler.start()
        self._set_state(self.state, force=True)  # subscribers learn the state at once
        self._thread = threading.Thread(target=self._main, name="subq-engine", daemon=True)
        self._thread.start()
        self.context.heartbeat.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop at the next safe point: the running job keeps its checkpoint (interrupted)."""
        self._stopping.set()
        self.context.interrupt(reason="quit")
        self._inbox.wake()
        if self._thread:
            self._thread.join(timeout)
        self.sampler.stop()

    def emergency_stop(self) -> None:  # from a signal handler, just before a hard exit
        self.context.emergency_stop()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing in this engine's view is runnable or running."""
        return self._inbox.idle.wait(timeout)

    def close(self) -> None:  # after shutdown: let go of the state file
        self.store.close()

    # -- public API: control (each returns at once) ------------------------------------
    def add(self, paths: Iterable[str], settings: Settings | None = None) -> None:
        self._inbox.send(cmd.Add(tuple(str(p) for p in paths), settings))

    def pause(self) -> None:
        if self.queue.running is not None and not self._paused:
            self._announce("pausing", tuple(sorted(self.models.pending)))
        self._inbox.send(cmd.Pause())

    def resume(self) -> None:
        self._inbox.send(cmd.Resume())

    def move(self, job_id: int, where: cmd.Where) -> None:
        self._inbox.send(cmd.Move(job_id, where))

    def cancel(self, job_id: int) -> None:
        self._inbox.send(cmd.Cancel(job_id))

    def remove(self, job_id: int) -> None:
        self._inbox.send(cmd.Remove(job_id))

    def retry(self, job_id: int) -> None:
        self._inbox.send(cmd.Retry(job_id))

    def clear_finished(self) -> None:
        self._inbox.send(cmd.ClearFinished())

    def unload(self, kind: str = "all") -> None:
        self._announce_unload(kind)
        self._inbox.send(cmd.Unload(kind))

    def release_gpu(self) -> None:
        self._announce_unload("all")
        self._inbox.send(cmd.ReleaseGpu())

    def start_anyway(self, job_id: int) -> None:
        self._inbox.send(cmd.StartAnyway(job_id))

    def worker_order(self, entry: str, order: str) -> None:  # pause, resume, release
        self._inbox.send(cmd.WorkerOrder(entry, order))  # type: ignore[arg-type]

    def update_settings(self, settings: Settings) -> None:
        self._inbox.send(cmd.UpdateSettings(settings.validate()))

    def jobs(self) -> list[Job]:
        return self.queue.jobs()

    def job(self, job_id: int) -> Job | None:
        return self.queue.job(job_id)

    @property
    def oom_count(self) -> int:
        return self.context.oom_count

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def loaded_models(self) -> tuple[LoadedModel, ...]:  # a snapshot the app may keep
        return self.models.snapshot()

    def _announce_unload(self, kind: str) -> None:
        """Show the request as pending at once; the engine applies it at its safe point."""
        if not self.lanes.busy():
            return
        kinds = tuple(sorted(kinds_of(kind)))
        self.log("info", f"unload of {', '.join(kinds)} pending: at the end of the current stage")
        self._announce(self.state, kinds)

    # -- the engine thread -------------------------------------------------------------
    def _main(self) -> None:
        try:
            ran = False
            while not self._stopping.is_set():
                # No poll straight after handing out a job; a lane done with one wakes us.
                waiting = self._has_work() or self.lanes.busy()
                self._inbox.drain(self._apply, None if ran else (0.2 if waiting else 1.0))
                if self.lanes.failure is not None:
                    raise self.lanes.failure
                if self._stopping.is_set():
                    break
                entries = self.lanes.entries(self.settings, self.models, self.sampler.nvml)
                self.models.reap_idle()
                self.lanes.settle_held(self.context)
                self._unload_pending()
                self.models.pool.refresh()
                self._prestart(entries)
                ran = self._dispatch(entries)
                if not ran and not self.lanes.busy():
                    self._on_idle()
                elif not ran and self._paused:
                    self._set_state("pausing")
        except (StateError, ClusterError) as exc:  # the queue cannot be saved, or no cluster
            self.fatal = str(exc)
            log.error("%s", exc)
            self.log("error", f"{exc}; the batch stopped (run it again once this is fixed)")
            with contextlib.suppress(Exception):
                self.emergency_stop()
        except Exception:  # a bug must not leave the UI waiting forever
            log.exception("engine thread crashed")
            self.fatal = "engine thread crashed"
            last = traceback.format_exc(limit=1).strip().splitlines()[-1]
            self.log("error", "engine thread crashed: " + last + logfile.details())
        finally:
            self._stopping.set()  # running jobs stop at their next safe point (a window)
            self.lanes.wait_idle(30.0)
            self.models.pool.close()
            self.lanes.stop(timeout=1.0)
            self._set_state("stopped")
            self._inbox.idle.set()

    def _dispatch(self, entries: list[str]) -> bool:
        """Hand runnable jobs to free lanes; True if one was handed out."""
        free = [] if self._paused else self.lanes.free(entries, self.models.pool.held)
        handed = False
        for entry in free:  # several workers: longest first (scheduling.py)
            avoid = self.context.unseen_at(entry)  # files its cluster node could not read
            job = self.queue.next_runnable(spread=len(entries) > 1, avoid=avoid)
            if job is None and not avoid:
                break  # nothing for any lane
            if job is not None:
                self.queue.active.add(job.id)  # not handed to another lane meanwhile
                self.models.busy()
                self._set_state("running")
                self.lanes.lanes[entry].give(job)
                handed = True
        return handed

    def _has_work(self) -> bool:
        return not self._paused and self.queue.has_work()

    def _on_idle(self) -> None:
        """No job runs here now."""
        if self._release:
            self.models.end_all("released")
            self._release = self.models.releasing = False
        if self._paused:  # otherwise next_runnable has just refreshed
            self.queue.refresh_foreign()
            self._set_state("paused")
        elif not self.queue.busy():
            self._set_state("idle")
            self._inbox.set_idle_if_empty()
        idle = not self._paused and not self._has_work()
        if self.models.keep_alive(idle, self.settings.keep_alive):
            self._set_state(self.state, force=True)

    def _apply(self, c: cmd.Command) -> None:
        match c:
            case cmd.Add(paths, settings, expanded):  # a turn now, the rest behind any order
                self.queue.add(paths, settings or self.settings, expanded, later=self._inbox.send)
            case cmd.Pause():
                if not self._paused:
                    self._paused = True
                    self.context.interrupt()  # running jobs stop at their next window
                    self._set_state("pausing" if self.lanes.busy() else "paused")
            case cmd.Resume():
                self._paused = False
                self.queue.resume_paused()
                self._set_state("running" if self._has_work() else "idle")
            case cmd.Move(job_id, where):
                self.queue.move(job_id, where)
            case cmd.Cancel(job_id) | cmd.Remove(job_id):
                (self.queue.cancel if isinstance(c, cmd.Cancel) else self.queue.remove)(job_id)
                self.context.interrupt({job_id}, "cancel")
            case cmd.Retry(job_id):
                self.queue.retry(job_id)
            case cmd.ClearFinished():
                self.queue.clear_finished()
            case cmd.Unload(kind):
                self._request_unload(kind)
            case cmd.ReleaseGpu():
                self._apply(cmd.Pause())
                self._release = self.models.releasing = True
                self._request_unload("all")
            case cmd.WorkerOrder(entry, order):
                self.lanes.order(entry, order, self.context)
            case cmd.StartAnyway(job_id):
                self.context.start_anyway.add(job_id)
            case cmd.Wake():
                pass
            case cmd.UpdateSettings(settings):
                self.settings = settings
                self.models.worker_timeout = settings.worker_timeout or None
                self.queue.update_settings(settings)

    def _request_unload(self, kind: str) -> None:
        self.models.request_unload(kind)
        self._unload_pending()  # at once where a worker is idle; busy ones at a stage end
        self._set_state(self.state, force=True)

    def _unload_pending(self, entries: list[str] | None = None) -> None:
        """Pending unloads on `entries` (a lane at its stage end), or on every idle entry."""
        busy = set(self.lanes.busy())
        if entries is None:
            entries = [e for e in self.models.pool.entries() if e not in busy]
        if self.models.apply_pending(entries, final=not busy):
            self._set_state(self.state, force=True)

    def _prestart(self, entries: list[str]) -> None:  # workers' imports overlap the probe
        if not self._paused:
            active = self.queue.active  # handed to a lane: its worker is that lane's
            waiting = sum(1 for j in self.queue.jobs() if j.state.runnable and j.id not in active)
            backend = "whisper" if self.settings.backend == "whisper" else "faster-whisper"
            self.lanes.prestart(entries[:], self.models.pool, waiting, (backend,))

    # -- events ------------------------------------------------------------------------
    def _announce(self, state: str, pending: tuple[str, ...]) -> None:
        self._publish(EngineStateChanged(state=state, models=self.models.names(), pending=pending))

    def _set_state(self, state: str, force: bool = False) -> None:
        if state == self.state and not force:
            return
        self.state = EngineState(state)
        self._announce(state, tuple(sorted(self.models.pending)))
