"""The model manager: which worker holds what; load lazily, keep loaded across jobs, unload.

Every model lives in a worker process (pool.py), one per device entry; this process keeps
only a handle (the worker's key for it). Loading sends Load, unloading sends Unload, and
unloading a worker's last model ends the worker: everything it held comes back, a CUDA
context included. What came back is measured from outside: the RSS of the worker's process
tree before and after, and on a GPU what NVML lists for its pid.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from . import memory
from . import worker_protocol as p
from .events import Event, LoadedModel, LogEmitted, ModelLoaded, ModelUnloaded
from .model_sizes import HEADROOM, fmt_bytes, whisper_estimate
from .model_types import (
    TRANSLATION,
    WHISPER,
    Loaded,
    NeedsMemory,
    RemoteError,
    RemoteModel,
    WorkerDied,
    kinds_of,
)
from .pool import WorkerPool, real_device
from .worker import CallHung

log = logging.getLogger("subq.engine")

LOAD_TIMEOUT_FACTOR = 5  # a load or unload may be silent this many times the hang limit


class IdleClock:
    """The keep-alive countdown: it runs while the engine idles holding something, and
    starts again from zero whenever that stops being so. Owned by the engine thread."""

    def __init__(self) -> None:
        self.deadline: float | None = None

    def expired(self, idle_and_holding: bool, keep: float) -> bool:
        if not idle_and_holding:
            self.deadline = None
            return False
        if keep < 0:
            return False
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + keep
        if now < self.deadline:
            return False
        self.deadline = None
        return True


class ModelManager:
    """Which worker holds which model. Ownership: `_models`, `pending` and `_snapshot` are
    changed by the lanes (a job's loads and its stage-end unloads) and by the engine thread
    (orders, keep-alive, deaths), always under `_lock`; the lock is never held across a
    worker call (a load can take minutes), so a table read is a snapshot and every change
    re-checks what it found. The worker calls themselves are serialised per worker by the
    pool (one caller at a time)."""

    def __init__(
        self,
        publish: Callable[[Event], None],
        nvml: Callable[[], memory.Nvml | None] = lambda: None,
    ) -> None:
        self._publish = publish
        self._nvml = nvml
        self.pool = WorkerPool(publish, nvml)
        self._lock = threading.RLock()
        self._models: dict[tuple[str, str, str], Loaded] = {}
        self._snapshot: tuple[LoadedModel, ...] = ()
        self.load_counts: collections.Counter[str] = collections.Counter()
        # unloads asked for while stages ran: kind -> the entries still to unload it
        self.pending: dict[str, set[str]] = {}
        self._nothing_loaded = False
        self._idle_clock = IdleClock()
        self.worker_timeout: float | None = None  # seconds of silence that make a call hung
        self.releasing = False  # a Release is under way: its unloads say "released"

    # -- queries ---------------------------------------------------------------------
    def loaded(self) -> list[Loaded]:  # a copy, taken under the lock
        with self._lock:
            return list(self._models.values())

    def snapshot(self) -> tuple[LoadedModel, ...]:
        """Safe from any thread: a tuple rebuilt on every load and unload, swapped whole."""
        return self._snapshot

    def _changed(self) -> None:
        self._snapshot = tuple(
            LoadedModel(m.kind, m.name, m.device, m.bytes) for m in self.loaded()
        )

    def names(self) -> tuple[str, ...]:
        return tuple(f"{m.kind}:{m.name}" for m in self.loaded())

    def is_loaded(self, kind: str) -> bool:
        return any(m.kind == kind for m in self.loaded())

    # -- loading ---------------------------------------------------------------------
    def whisper(
        self, name: str, device: str, *, backend: str = "whisper", ignore_budget: bool = False
    ) -> RemoteModel:
        label = name if backend == "whisper" else f"{name} ({backend})"
        request = p.Load("asr", name, real_device(device), backend)
        estimate = whisper_estimate(name)
        return self._get(
            WHISPER, label, device, request, estimate=estimate, ignore_budget=ignore_budget
        )

    def translator(self, name: str, device: str, *, ignore_budget: bool = False) -> RemoteModel:
        request = p.Load("translate", name, real_device(device))
        return self._get(
            TRANSLATION, name, device, request, estimate=int(310e6), ignore_budget=ignore_budget
        )

    def _get(
        self,
        kind: str,
        name: str,
        device: str,
        request: p.Load,
        *,
        estimate: int,
        ignore_budget: bool,
    ) -> RemoteModel:
        key = (kind, name, device)
        self._forget(device, stale_only=True)
        with self._lock:
            reuse = self._models.get(key)
        if reuse is not None:
            self._say("info", f"reusing {kind} model {name} (loaded once for the batch)")
            return reuse.model
        # One model of a kind at a time: a new whisper model replaces the old one.
        for other in [m for m in self.loaded() if m.kind == kind and m.device == device]:
            self._unload_one(other, "replaced by " + name)
        if not ignore_budget:
            make_room(self, kind, device, int(estimate * HEADROOM))
        started = time.perf_counter()
        reply = self.call(device, request)
        seconds = time.perf_counter() - started
        handle = RemoteModel(device, reply.key, request.backend, self.pool.pid(device))
        with self._lock:
            self._models[key] = Loaded(kind, name, device, handle, reply.bytes, time.time())
        self._changed()
        self.pool.set_models(device, self.names_on(device))
        self.load_counts[kind] += 1
        self._publish(
            ModelLoaded(kind=kind, name=name, device=device, bytes=reply.bytes, seconds=seconds)
        )
        return handle

    def call(
        self, entry: str, request: Any, on_message: Callable[[Any], None] | None = None
    ) -> Any:
        """Send `request` to the entry's worker and return its final reply; a failed call
        raises RemoteError(kind, message), a worker that died, hung or broke the channel
        raises WorkerDied. A call that sends no message for `worker_timeout` seconds is
        hung (a Load or an Unload, which have no windows, gets `LOAD_TIMEOUT_FACTOR` times
        that: a large model on a slow disk is not a hang)."""
        self._check_alive(entry, request)
        worker = self.pool.worker(entry)
        limit = self.worker_timeout
        if limit is not None and isinstance(request, p.Load | p.Unload):
            limit *= LOAD_TIMEOUT_FACTOR
        try:
            reply = worker.request(request, on_message, timeout=limit)
        except CallHung as hung:
            raise self._lost(WorkerDied(entry, str(hung))) from None
        if isinstance(reply, p.Exited):
            blamed, stuck = reply.accepted, reply.stuck
            raise self._lost(WorkerDied(entry, reply.how, blamed=blamed, stopping=stuck))
        if isinstance(reply, p.Error):
            if reply.detail:
                log.error("worker on %s: %s\n%s", entry, reply.message, reply.detail)
            if reply.kind == p.CUDA:  # the worker exits by itself: its models are gone
                self._forget(entry)
                self.pool.died(entry, f"CUDA error: {reply.message}")
            raise RemoteError(reply.kind, reply.message)
        return reply

    def reap_idle(self) -> None:
        """Notice workers that died between calls (the engine thread, every loop): their
        models are forgotten and the death is said once, blamed on no job."""
        for entry, how in self.pool.dead_idle():
            self._forget(entry)
            what = f"worker on {entry} died while idle ({how}); no job was running on it"
            self._say("warning", what + ", and the next one starts a new worker")

    def _check_alive(self, entry: str, request: Any) -> None:
        """WorkerDied, blamed on no job, where the worker died unnoticed since its last call
        (the pool would start a new one without a word) or the request's model went with an
        earlier worker (reaped after the job's load): the job is requeued and loads again."""
        how = self.pool.unnoticed_death(entry)
        if how is not None:
            raise self._lost(WorkerDied(entry, how, blamed=False))
        wanted = getattr(request, "model", None)
        if wanted is None:
            return
        self._forget(entry, stale_only=True)
        if not any(m.model.key == wanted for m in self.loaded() if m.device == entry):
            raise WorkerDied(entry, "its model went with an earlier worker", blamed=False)

    def _lost(self, died: WorkerDied) -> WorkerDied:
        """The worker of `died` is gone: forget its models and say so on its row."""
        self._forget(died.entry)
        self.pool.died(died.entry, died.what)
        return died

    def _say(self, level: str, message: str) -> None:  # a line in the log
        self._publish(LogEmitted(level=level, message=message))

    def _forget(self, entry: str, stale_only: bool = False) -> None:
        """Drop the handles of models that lived in the entry's worker (it is gone); with
        `stale_only`, those that live in any process but its live worker."""
        live = self.pool.pid(entry) if stale_only and self.pool.alive(entry) else None
        with self._lock:
            gone = [
                k
                for k, m in self._models.items()
                if m.device == entry and (live is None or getattr(m.model, "pid", live) != live)
            ]
            for k in gone:
                self._models.pop(k, None)
        if gone:
            self._changed()

    # -- unloading -------------------------------------------------------------------
    def request_unload(self, kind: str) -> None:
        """Mark `kind` ("all" for both) to unload on each entry holding it, at that entry's
        next `apply_pending` (at once where its worker is idle, else at a stage's end)."""
        kinds = kinds_of(kind)
        with self._lock:
            for k in kinds:
                self.pending[k] = self.pending.get(k, set()) | {
                    m.device for m in self.loaded() if m.kind == k
                }
            self._nothing_loaded = not any(self.pending.get(k) for k in kinds)

    def apply_pending(self, entries: list[str] | None = None, final: bool = True) -> bool:
        """Unload what was asked for, on `entries` (None: all); False when nothing changed.
        A kind stays shown as pending while a job runs (`final` False) even where no entry
        holds it now: a running job may load it before its stage ends."""
        with self._lock:
            if not self.pending:
                return False
            before = sum(len(v) for v in self.pending.values()), len(self.pending)
            wanted = {kind: set(entries_) for kind, entries_ in self.pending.items()}
        freed: list[ModelUnloaded] = []
        for kind in sorted(wanted):
            targets = wanted[kind] if entries is None else wanted[kind] & set(entries)
            for m in self.loaded():
                if m.kind == kind and m.device in targets:
                    freed.append(self._unload_one(m, "released" if self.releasing else "requested"))
            with self._lock:
                if kind in self.pending:
                    self.pending[kind] -= targets
                    if not self.pending[kind] and final:
                        del self.pending[kind]
        if not freed and self._nothing_loaded:
            self._nothing_loaded = False
            message = "no model was loaded; nothing to unload"
            log.info(message)
            self._say("info", message)
        with self._lock:
            after = sum(map(len, self.pending.values())), len(self.pending)
        return bool(freed) or before != after

    def keep_alive(self, idle: bool, keep: float) -> bool:
        """Called while the engine idles: unload everything once `keep` seconds have passed
        with nothing to do (never if `keep` < 0). True when it just unloaded."""
        holding = bool(self._models or self.pool.pids())
        if not self._idle_clock.expired(idle and holding, keep):
            return False
        self.unload("all", reason=f"keep-alive {keep:g} s expired")
        self.end_idle_workers(f"keep-alive {keep:g} s expired")
        return True

    def busy(self) -> None:
        """A job starts: the keep-alive countdown starts again when the queue next drains."""
        self._idle_clock.deadline = None

    def unload(self, kind: str | None = None, reason: str = "requested") -> list[ModelUnloaded]:
        """Unload one kind (or all); returns what each unload gave back."""
        return [self._unload_one(m, reason) for m in self.loaded() if kind in (None, "all", m.kind)]

    def end_all(self, reason: str) -> None:
        """Unload everything and end every worker (Release): nothing stays on a device."""
        self.unload("all", reason=reason)
        self.end_idle_workers(reason)

    def unload_entry(self, entry: str, reason: str) -> None:
        """Unload everything on one entry and end its worker (an entry no longer used)."""
        for m in self.loaded():
            if m.device == entry:
                self._unload_one(m, reason)
        if self.pool.alive(entry):
            self.pool.end(entry, reason)

    def end_idle_workers(self, reason: str) -> None:
        """End every worker that holds no model (Release, keep-alive, a worker started
        ahead of time that is no longer needed)."""
        held = {m.device for m in self.loaded()}
        for entry in list(self.pool.entries()):
            if entry not in held and self.pool.alive(entry):
                self.pool.end(entry, reason)

    def _unload_one(self, loaded: Loaded, reason: str) -> ModelUnloaded:
        entry = loaded.device
        worker = self.pool.slot(entry).worker
        live = worker if worker is not None and worker.alive else None
        nvml = self._nvml()
        rss_before, gpu_before = live.footprint(nvml) if live else (0, None)
        with self._lock:
            self._models.pop((loaded.kind, loaded.name, entry), None)
        self._changed()
        last = not any(m.device == entry for m in self.loaded())
        if live is None:
            rss_after, gpu_after = 0, None
        elif last:  # the worker's last model: end it, everything it held comes back
            self.pool.end(entry, f"unloaded its last model ({reason})")
            rss_after, gpu_after = 0, (0 if gpu_before is not None else None)
        else:
            model = loaded.model
            key = model.key if isinstance(model, RemoteModel) else ""
            try:
                self.call(entry, p.Unload(key))
            except (RemoteError, WorkerDied) as exc:
                log.warning("unload in the worker on %s: %s", entry, exc)
            rss_after, gpu_after = live.footprint(nvml)
        self.pool.set_models(entry, self.names_on(entry))
        event = ModelUnloaded(
            kind=loaded.kind,
            name=loaded.name,
            device=entry,
            bytes=loaded.bytes,
            reason=reason,
            rss_before=rss_before,
            rss_after=rss_after,
            nvml_used_before=gpu_before,
            nvml_used_after=gpu_after,
        )
        self._publish(event)
        return event

    def names_on(self, entry: str) -> tuple[str, ...]:
        return tuple(f"{m.kind}:{m.name}" for m in self.loaded() if m.device == entry)


def make_room(manager: ModelManager, kind: str, device: str, needed: int) -> None:
    """Memory-budget policy: unload the other model on this device (only this one: a
    model on another device frees nothing here) before failing for want of room."""
    free = memory.free_device_bytes(device, manager._nvml())
    if free is None or free >= needed:
        return
    for other in [m for m in manager.loaded() if m.kind != kind and m.device == device]:
        manager._say(
            "info",
            f"memory budget: unloading {other.kind} model {other.name} to make room for "
            f"{kind} ({fmt_bytes(needed)} needed, {fmt_bytes(free)} free)",
        )
        manager._unload_one(other, "memory budget")
        free = memory.free_device_bytes(device, manager._nvml())
        if free is None or free >= needed:
            return
    raise NeedsMemory(needed, free or 0)
