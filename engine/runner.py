"""The engine: one background thread that owns the queue, the models and CUDA.

Control calls enqueue a command and return at once; the engine thread applies commands at
safe points (between jobs, between stages, and before every 30 s transcription window) in
one dispatch. Every state change is committed to SQLite before it is acted on, then
published as an event. Subscribers (the TUI, the headless printer) only ever receive events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from . import commands as cmd
from . import logfile, media, memory
from .events import (
    EngineState,
    EngineStateChanged,
    Event,
    JobChanged,
    JobRemoved,
    LoadedModel,
    LogEmitted,
    ModelUnloaded,
    QueueReordered,
    StageProgressed,
)
from .jobs import Job, JobState, Stage
from .models import TRANSLATION, WHISPER, ModelManager, NeedsMemory, fmt_bytes
from .outputs import (
    choose_base,
    content_fingerprint,
    done_key,
    output_folder,
    output_targets,
    outputs_current,
)
from .queue import reorder
from .settings import Settings, default_state_path
from .store import StateError, Store

log = logging.getLogger("subq.engine")
MEMORY_RECHECK = 3.0  # seconds between free-memory checks while a job waits for room
HEARTBEAT = 3.0


class _Stop(Exception):
    def __init__(self, state: JobState, reason: str = "") -> None:
        super().__init__(reason)
        self.state = state


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
        self._commands: queue.Queue[cmd.Command] = queue.Queue()
        self._subscribers: list[Callable[[Event], None]] = []
        self._lock = threading.RLock()
        self._jobs: dict[int, Job] = {}
        self._paused = paused
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: int | None = None
        self._cancel_running = False
        self._start_anyway: set[int] = set()
        self._pending_unload: set[str] = set()
        self._keep_alive_deadline: float | None = None
        self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subq-prefetch")
        self._prefetched: dict[str, Future[np.ndarray]] = {}
        self.sampler = memory.MemorySampler(self._publish, interval=memory_interval)
        self._sample_memory = sample_memory
        self.models = ModelManager(self._publish, lambda: self.sampler.nvml)
        self.oom_count = 0
        self.fatal: str | None = None  # why the engine thread stopped early, if it did
        self._lease_lost: str | None = None
        self._last_refresh = 0.0
        self.state = EngineState.PAUSED if paused else EngineState.IDLE

    # -- public API: lifecycle --------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> None:
        self._subscribers.append(fn)

    def unsubscribe(self, fn: Callable[[Event], None]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(fn)

    def start(self) -> None:
        if self.store.moved_aside:
            self._log(
                "warning",
                f"state file was corrupt; moved aside to {self.store.moved_aside}"
                " and started a new queue",
            )
        logfile.attach()
        for note in self.store.migration_notes:
            self._log("info", note)
        for job_id in self.store.recover_stale():
            self._log("info", f"job {job_id} was interrupted by a crash; it will resume")
        if self.whole_queue:
            with self._lock:
                self._jobs = {j.id: j for j in self.store.jobs()}
        if self._sample_memory:
            self.sampler.start()
        self._set_state(self.state, force=True)  # subscribers learn the state at once
        self._thread = threading.Thread(target=self._main, name="subq-engine", daemon=True)
        self._thread.start()
        threading.Thread(target=self._heartbeat, name="subq-heartbeat", daemon=True).start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop at the next safe point: the running job keeps its checkpoint (interrupted)."""
        self._stopping.set()
        self._commands.put(cmd.Wake())
        if self._thread:
            self._thread.join(timeout)
        self.sampler.stop()
        self._prefetch.shutdown(wait=False, cancel_futures=True)

    def emergency_stop(self) -> None:
        """From a signal handler, just before a hard exit: commit and remove temp files."""
        from .subtitles import remove_live_temps

        remove_live_temps()
        running = self._running
        if running is not None:
            with contextlib.suppress(Exception):
                self.store.mark_interrupted_now([running])

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing in this engine's view is runnable or running."""
        return self._idle.wait(timeout)

    # -- public API: control (each returns at once) ------------------------------------
    def add(self, paths: Iterable[str], settings: Settings | None = None) -> None:
        self._send(cmd.Add(tuple(str(p) for p in paths), settings))

    def pause(self) -> None:
        if self._running is not None and not self._paused:
            self._publish(
                EngineStateChanged(
                    state="pausing",
                    models=self.models.names(),
                    pending=tuple(sorted(self._pending_unload)),
                )
            )
        self._send(cmd.Pause())

    def resume(self) -> None:
        self._send(cmd.Resume())

    def move(self, job_id: int, where: cmd.Where) -> None:
        self._send(cmd.Move(job_id, where))

    def cancel(self, job_id: int) -> None:
        self._send(cmd.Cancel(job_id))

    def remove(self, job_id: int) -> None:
        self._send(cmd.Remove(job_id))

    def retry(self, job_id: int) -> None:
        self._send(cmd.Retry(job_id))

    def clear_finished(self) -> None:
        self._send(cmd.ClearFinished())

    def unload(self, kind: str = "all") -> None:
        self._announce_unload(kind)
        self._send(cmd.Unload(kind))

    def release_gpu(self) -> None:
        self._announce_unload("all")
        self._send(cmd.ReleaseGpu())

    def _announce_unload(self, kind: str) -> None:
        """Show the request as pending at once; the engine applies it at its safe point."""
        if self._running is None:
            return
        kinds = tuple(sorted({WHISPER, TRANSLATION} if kind == "all" else {kind}))
        self._log("info", f"unload of {', '.join(kinds)} pending: at the end of the current stage")
        self._publish(
            EngineStateChanged(state=self.state, models=self.models.names(), pending=kinds)
        )

    def start_anyway(self, job_id: int) -> None:
        self._send(cmd.StartAnyway(job_id))

    def update_settings(self, settings: Settings) -> None:
        self._send(cmd.UpdateSettings(settings.validate()))

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: (j.position, j.id))

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def loaded_models(self) -> tuple[LoadedModel, ...]:
        """A snapshot the app may keep; the engine thread swaps its own copy on every change."""
        return self.models.snapshot()

    def close(self) -> None:
        """After shutdown: let go of the state file (the app must not reach into the store)."""
        self.store.close()

    def running_job(self) -> int | None:
        return self._running

    def _send(self, command: cmd.Command) -> None:
        with self._lock:  # paired with the idle check, so an order is never missed
            self._idle.clear()
            self._commands.put(command)

    # -- the engine thread -------------------------------------------------------------
    def _main(self) -> None:
        try:
            ran = False
            while not self._stopping.is_set():
                # Straight after a job, only take the commands already there: the next job
                # (or the idle signal) must not wait out a poll (this cost 0.2 s per file and
                # 1 s at the end of every `subq run`). The polls are for waiting, not working.
                self._drain(block=None if ran else (0.2 if self._has_work() else 1.0))
                if self._stopping.is_set():
                    break
                self._apply_pending_unloads()
                job = None if self._paused else self._next_job()
                ran = job is not None
                if job is None:
                    self._on_idle()
                    continue
                self._keep_alive_deadline = None
                self._run(job)
        except StateError as exc:  # the queue cannot be saved: stop, say so in one line
            self.fatal = str(exc)
            log.error("%s", exc)
            self._log("error", f"{exc}; the batch stopped (run it again once this is fixed)")
            with contextlib.suppress(Exception):
                self.emergency_stop()
        except Exception:  # a bug must not leave the UI waiting forever
            log.exception("engine thread crashed")
            self.fatal = "engine thread crashed"
            self._log(
                "error",
                "engine thread crashed: "
                + traceback.format_exc(limit=1).strip().splitlines()[-1]
                + logfile.details(),
            )
        finally:
            self._set_state("stopped")
            self._idle.set()

    def _has_work(self) -> bool:
        return not self._paused and any(j.state.runnable for j in self.jobs())

    def _on_idle(self) -> None:
        if self._paused:  # otherwise _next_job has just refreshed
            self._refresh_foreign()
        busy = any(j.state == JobState.RUNNING or j.state.runnable for j in self.jobs())
        if self._paused:
            self._set_state("paused")
        elif not busy:
            self._set_state("idle")
            with self._lock:
                if self._commands.empty():
                    self._idle.set()
        self._keep_alive_tick()

    def _keep_alive_tick(self) -> None:
        if not self.models.loaded() or self._paused or self._has_work():
            self._keep_alive_deadline = None
            return
        keep = self.settings.keep_alive
        if keep < 0:
            return
        now = time.monotonic()
        if self._keep_alive_deadline is None:
            self._keep_alive_deadline = now + keep
        if now >= self._keep_alive_deadline:
            self._keep_alive_deadline = None
            self.models.unload("all", reason=f"keep-alive {keep:g} s expired")
            self._set_state(self.state, force=True)

    def _heartbeat(self) -> None:
        """Keep the running job's lease fresh; without it another worker may take the job,
        so a lease that cannot be renewed (or was taken) stops the job at its next safe point."""
        while not self._stopping.wait(HEARTBEAT):
            running = self._running
            if running is None:
                continue
            try:
                held = self.store.heartbeat([running])
            except Exception as exc:
                held, reason = [], f"cannot renew its lease: {exc}"
            else:
                reason = "its lease was taken by another worker"
            if running not in held and self._running == running:
                self._lease_lost = f"{reason}; it stops here and resumes later"

    # -- commands ----------------------------------------------------------------------
    def _drain(self, block: float | None = None) -> None:
        try:
            first = self._commands.get(timeout=block) if block else self._commands.get_nowait()
        except queue.Empty:
            return
        self._apply(first)
        while True:
            try:
                self._apply(self._commands.get_nowait())
            except queue.Empty:
                return

    def _apply(self, c: cmd.Command) -> None:
        match c:
            case cmd.Add(paths, settings):
                self._add(paths, settings or self.settings)
            case cmd.Pause():
                if not self._paused:
                    self._paused = True
                    self._set_state("pausing" if self._running is not None else "paused")
            case cmd.Resume():
                self._paused = False
                for job in self.jobs():
                    if job.state == JobState.PAUSED and job.id != self._running:
                        self._change(job, JobState.QUEUED)
                self._set_state("running" if self._has_work() else "idle")
            case cmd.Move(job_id, where):
                self._move(job_id, where)
            case cmd.Cancel(job_id):
                self._cancel(job_id)
            case cmd.Remove(job_id):
                self._remove(job_id)
            case cmd.Retry(job_id):
                job = self._jobs.get(job_id)
                if job and job.state.finished:
                    force = job.state in (JobState.DONE, JobState.SKIPPED)
                    settings = dataclasses.replace(job.settings, force=force or job.settings.force)
                    self._change(
                        job,
                        JobState.QUEUED,
                        error=None,
                        progress=0.0,
                        stage=None,
                        stage_times=(),
                        settings=settings,
                    )
            case cmd.ClearFinished():
                for job in self.jobs():
                    if job.state.finished:
                        self._forget(job.id)
            case cmd.Unload(kind):
                self._request_unload(kind)
            case cmd.ReleaseGpu():
                self._apply(cmd.Pause())
                self._request_unload("all")
            case cmd.StartAnyway(job_id):
                self._start_anyway.add(job_id)
            case cmd.Wake():
                pass
            case cmd.UpdateSettings(settings):
                self.settings = settings
                for job in self.jobs():
                    if job.state == JobState.QUEUED and job.progress == 0 and not job.resume_from:
                        base = self._base_for(job, settings)
                        self._change(job, JobState.QUEUED, settings=settings, output_base=base)

    def _request_unload(self, kind: str) -> None:
        kinds = {WHISPER, TRANSLATION} if kind == "all" else {kind}
        self._pending_unload |= kinds
        if self._running is None:
            self._apply_pending_unloads()
        else:
            self._set_state(self.state, force=True)

    def _apply_pending_unloads(self) -> None:
        if not self._pending_unload:
            return
        kinds, self._pending_unload = self._pending_unload, set()
        freed: list[ModelUnloaded] = []
        for kind in sorted(kinds):
            freed += self.models.unload(kind, reason="requested")
        if not freed:
            self._log("info", "no model was loaded; nothing to unload")
        self._set_state(self.state, force=True)

    def _add(self, paths: Sequence[str], settings: Settings) -> None:
        settings = settings.validate()
        seen: set[str] = set()
        taken = self.store.output_bases()
        new: list[tuple[str, str, tuple[str, ...]]] = []
        for path in media.expand_paths(paths):
            key = str(path)
            if key in seen:
                self._log("info", f"{key}: given twice; added once")
                continue
            seen.add(key)
            existing = self._find(key)
            if existing is not None:
                self._readd(existing, settings)
                continue
            base, note = choose_base(path, settings, taken)
            taken.add(base)
            new.append((key, base, (note,) if note else ()))
        for job in self.store.add_jobs(new, settings):
            for note in job.notes:
                self._log("warning", note, job.id)
            with self._lock:
                self._jobs[job.id] = job
            self._publish(JobChanged(job=job))

    def _find(self, path: str) -> Job | None:
        for job in self.jobs():
            if job.path == path:
                return job
        return self.store.latest_for_path(path)

    def _readd(self, job: Job, settings: Settings) -> None:
        """The same file again: resume, keep or redo it, never add a duplicate.

        The new request's output folder, formats and languages win: a finished job whose
        outputs are not all there as written (deleted, moved to another --output-dir, other
        formats) is queued again, and its stored transcript writes them without transcribing.
        """
        in_view = job.id in self._jobs
        base = self._base_for(job, settings)
        if (
            job.state in (JobState.DONE, JobState.SKIPPED)
            and not settings.force
            and self._outputs_current(job, settings, base)
        ):
            note = "already done"
        elif job.state.runnable or job.state == JobState.RUNNING:
            note = "already in the queue"
            if job.state.runnable and (job.settings, job.output_base) != (settings, base):
                job = dataclasses.replace(job, settings=settings, output_base=base)
                self.store.save(job)
        else:
            note = "queued again"
            job = job.moved_to(
                JobState.QUEUED,
                settings=settings,
                output_base=base,
                error=None,
                progress=0.0,
                stage=None,
                stage_times=(),
            )
            self.store.save(job)
        if in_view:
            self._log("info", f"{job.path}: {note}", job.id)
        elif note != "queued again":
            self._log("info", f"{job.path}: {note} (from the saved queue)", job.id)
        with self._lock:
            self._jobs[job.id] = job
        self._publish(JobChanged(job=job))

    def _base_for(self, job: Job, settings: Settings) -> str:
        """The job's output base under `settings`: kept while the folder is the same."""
        path = Path(job.path)
        folder = output_folder(path, settings)
        parent = Path(job.output_base or "").parent
        if job.output_base and (
            parent == folder or (settings.output_dir and parent.parent == folder)
        ):
            return job.output_base
        taken = self.store.output_bases() - {job.output_base}
        base, note = choose_base(path, settings, taken)
        if note:
            self._log("warning", note, job.id)
        return base

    def _outputs_current(self, job: Job, settings: Settings, base: str) -> bool:
        try:
            fingerprint = content_fingerprint(Path(job.path))
        except OSError:
            return False  # the run will say what is wrong with the input
        targets = output_targets(base, settings)
        return outputs_current(
            self.store.done_record(job.id), fingerprint, done_key(settings, base), targets
        )

    def _move(self, job_id: int, where: cmd.Where) -> None:
        jobs = {j.id: j for j in self.jobs()}
        if job_id not in jobs:
            return
        order = [jobs[i] for i in reorder(list(jobs), job_id, where)]
        changed = [dataclasses.replace(j, position=float(i + 1)) for i, j in enumerate(order)]
        self.store.save_positions(changed)
        with self._lock:
            for j in changed:
                self._jobs[j.id] = j
        self._publish(QueueReordered(order=tuple(j.id for j in changed)))

    def _cancel(self, job_id: int) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.state.finished:
            return
        if job_id == self._running:
            self._cancel_running = True
            self._log("info", f"{job.name}: cancelling at the next safe point", job_id)
        else:
            self.store.set_checkpoint(job_id, "", None)
            self._change(job, JobState.CANCELLED, stage=None)

    def _remove(self, job_id: int) -> None:
        if job_id == self._running:
            self._cancel(job_id)
            self._log("info", "a running job is cancelled first; remove it once it stops", job_id)
            return
        if job_id in self._jobs:
            self.store.delete(job_id)
            self._forget(job_id)

    def _forget(self, job_id: int) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
        self._publish(JobRemoved(job_id=job_id))

    # -- picking work ------------------------------------------------------------------
    def _next_job(self) -> Job | None:
        self._refresh_foreign()  # a dead worker's job is taken up in queue order, first
        for job in self.jobs():
            if not job.state.runnable:
                continue
            holder = self.store.claim(job.id)
            fresh = self.store.job(job.id)
            if holder is not None or fresh is None or not fresh.state.runnable:
                if holder is None:
                    self.store.release(job.id)
                self._sync(job.id, fresh)
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

    def _refresh_foreign(self, every: float = 0.0) -> None:
        """Jobs another worker runs: follow their state from the shared store, and free the
        jobs of workers that are gone (a dead pid on this host, or a stale heartbeat)."""
        now = time.monotonic()
        if now - self._last_refresh < every:
            return
        self._last_refresh = now
        for job in self.jobs():
            if job.state == JobState.RUNNING and job.id != self._running:
                fresh = self.store.job(job.id)
                if fresh is None or fresh.state != job.state or fresh.stage != job.stage:
                    self._sync(job.id, fresh)
        for job_id in self.store.recover_stale():
            if job_id in self._jobs:
                self._sync(job_id, self.store.job(job_id))

    # -- running one job ---------------------------------------------------------------
    def _run(self, job: Job) -> None:
        from .pipeline import Pipeline

        self._running = job.id
        self._cancel_running = False
        self._lease_lost = None
        self._set_state("running")
        job = self._change(job, JobState.RUNNING, stage=Stage.PROBE, error=None)
        try:
            final = Pipeline(self, job).run()
            self._change(self._jobs.get(job.id, job), final.state, **final.changes)
        finally:
            self.store.release(job.id)
            self._running = None
            self._start_anyway.discard(job.id)
            self._apply_pending_unloads()
            if self._paused:
                self._set_state("paused")

    # -- used by the pipeline ------------------------------------------------------------
    def checkpoint_safe_point(self, job: Job) -> None:
        """Apply waiting commands; raise to stop the stage if the job must stop here."""
        self._drain()
        if self._stopping.is_set():
            raise _Stop(JobState.INTERRUPTED, "stopped; will resume from here")
        if self._lease_lost:
            self._log("warning", f"{job.name}: {self._lease_lost}", job.id)
            raise _Stop(JobState.INTERRUPTED, self._lease_lost)
        self._refresh_foreign(every=2.0)
        if self._cancel_running:
            raise _Stop(JobState.CANCELLED, "cancelled")
        if self._paused:
            raise _Stop(JobState.PAUSED, "paused")

    def prefetch_next(self, after: Job) -> None:
        """Decode the next runnable job's audio while this one transcribes."""
        order = [j for j in self.jobs() if j.state.runnable and j.id != after.id]
        if not order:
            return
        path = order[0].path
        if path not in self._prefetched:
            self._prefetched = {k: v for k, v in self._prefetched.items() if k == after.path}
            self._prefetched[path] = self._prefetch.submit(media.decode_audio, Path(path))

    def take_audio(self, path: str) -> np.ndarray:
        future = self._prefetched.pop(path, None)
        if future is not None:
            try:
                return future.result()
            except media.MediaError:
                raise
            except Exception:  # decode again here, where the error is reported properly
                log.warning("prefetch of %s failed; decoding it again", path, exc_info=True)
        return media.decode_audio(Path(path))

    def wait_for_memory(self, job: Job, error: NeedsMemory) -> bool:
        """Show "waiting for GPU memory" and re-check; True when the user said start anyway."""
        self._change(self._jobs[job.id], JobState.RUNNING, stage=Stage.WAITING, error=str(error))
        self._log("warning", f"{job.name}: {error}", job.id)
        deadline = time.monotonic() + MEMORY_RECHECK
        while time.monotonic() < deadline:
            self.checkpoint_safe_point(job)
            if job.id in self._start_anyway:
                return True
            time.sleep(0.1)
        return False

    def oom(self, job: Job, message: str) -> None:
        self.oom_count += 1
        self._log("warning", f"{job.name}: {message} (OOM #{self.oom_count})", job.id)

    def progress(
        self, job: Job, stage: Stage, fraction: float, started: float, audio_seconds: float | None
    ) -> None:
        elapsed = time.perf_counter() - started
        speed = eta = None
        if audio_seconds and elapsed > 0 and fraction > 0:
            speed = audio_seconds * fraction / elapsed
            eta = elapsed * (1 - fraction) / fraction
        with self._lock:
            current = self._jobs.get(job.id)
            if current is not None:
                self._jobs[job.id] = dataclasses.replace(current, progress=fraction, stage=stage)
        self._publish(
            StageProgressed(
                job_id=job.id, stage=stage, fraction=fraction, speed=speed, eta=eta, elapsed=elapsed
            )
        )

    def enter_stage(self, job: Job, stage: Stage) -> Job:
        self.checkpoint_safe_point(job)
        self._apply_pending_unloads()
        return self._change(
            self._jobs.get(job.id, job), JobState.RUNNING, stage=stage, progress=0.0
        )

    def _change(self, job: Job, state: JobState, **changes: Any) -> Job:
        """Commit first, then publish: the store is the truth after a crash."""
        new = job.moved_to(state, **changes)
        self.store.save(new)
        with self._lock:
            self._jobs[new.id] = new
        self._publish(JobChanged(job=new, previous=job.state))
        return new

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    # -- events ------------------------------------------------------------------------
    def _publish(self, event: Event) -> None:
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber failed")

    def _log(self, level: str, message: str, job_id: int | None = None) -> None:
        getattr(log, "warning" if level == "warning" else "info")(message)
        self._publish(LogEmitted(level=level, message=message, job_id=job_id))

    def _set_state(self, state: str, force: bool = False) -> None:
        if state == self.state and not force:
            return
        self.state = EngineState(state)
        pending = tuple(sorted(self._pending_unload))
        self._publish(EngineStateChanged(state=state, models=self.models.names(), pending=pending))


def describe_unload(event: ModelUnloaded) -> str:
    where = "GPU" if event.device.startswith("cuda") else "RAM"
    caveat = " (the CUDA context stays until subq exits)" if where == "GPU" else ""
    return (
        f"unloaded {event.kind} model {event.name} ({fmt_bytes(event.bytes)}): "
        f"{fmt_bytes(event.returned)} of {where} returned{caveat}"
    )
