"""The worker pool: one worker process per device entry, started and ended by the engine.

Entries come from `--device`: "cuda:0,cuda:1", "all", "cpu,cpu" (named "cpu", "cpu#2": each
CPU worker gets its share of the cores). A worker is started on first use (or ahead of
time, when jobs are queued) from the thread that owns the entry for the engine's life (a
worker dies with the thread that spawned it), and ended when its last model is unloaded,
on Release, keep-alive expiry and shutdown: the only way to hand back everything, a CUDA
context included. What each worker holds is published as `WorkerChanged`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import memory, procs
from . import worker_protocol as p
from .events import Event, LogEmitted, WorkerChanged
from .model_types import WorkerDied
from .worker import WorkerError, WorkerProcess

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger("subq.engine")
READY_TIMEOUT = 300.0  # seconds for a worker's interpreter to start (imports come later)


def real_device(entry: str) -> str:
    """The device an entry runs on: "cpu#2" -> "cpu"; a cluster's "gpu-3/gpu0" -> "cuda:0"
    (the worker's own GPU, as it sees it on its node), "gpu-4/cpu" -> "cpu", and a slot of
    another resource standing in for a GPU ("node/fake_gpu0") -> "cpu"."""
    if "/" in entry:
        return "cuda:0" if entry.rsplit("/", 1)[1].startswith("gpu") else "cpu"
    return entry.split("#", 1)[0]


def entry_names(devices: list[str]) -> list[str]:
    """Unique entry names: the second "cpu" is "cpu#2"."""
    names: list[str] = []
    for device in devices:
        name, n = device, 1
        while name in names:
            n += 1
            name = f"{device}#{n}"
        names.append(name)
    return names


def cpu_threads(devices: list[str]) -> int | None:
    """Threads per CPU worker when several share the cores; None (the library's default)
    for a single one."""
    n = sum(1 for d in devices if real_device(d) == "cpu")
    usable = procs.usable_cpus()
    if n <= 1 and usable == os.cpu_count():
        return None
    return max(1, usable // max(1, n))


class DeviceChoice:
    """--device as worker entries, decided when no worker runs and kept while one does.

    Why: "auto" is the GPU with the most free memory *now*; asked again on every engine
    loop, a batch moved from GPU to GPU as its own model filled the one it was on, loading
    the model and a CUDA context on each in turn. Owned by the engine thread."""

    def __init__(self) -> None:
        self._held: tuple[str, list[str]] | None = None  # (--device, its entries)

    def devices(
        self, wanted: str, nvml: memory.Nvml | None, workers_running: bool
    ) -> tuple[list[str], bool]:
        """The device entries, and whether they were decided anew just now."""
        if self._held is not None and self._held[0] == wanted and workers_running:
            return self._held[1], False
        devices = memory.device_entries(wanted, nvml)
        changed = self._held is None or self._held != (wanted, devices)
        self._held = (wanted, devices)
        return devices, changed


@dataclass
class Slot:
    entry: str
    threads: int | None
    worker: WorkerProcess | None = None
    models: tuple[str, ...] = ()
    job_id: int | None = None
    starting: bool = False  # a start is on its way (on the entry's lane)
    owner: int | None = field(default=None, repr=False)  # thread ident that spawned it


class WorkerPool:
    """The slots, one per device entry. Ownership: the slots table is guarded by `_lock`;
    starting a worker by `_start_lock` (two threads never start two workers for one
    entry); a worker's calls by its own call lock (worker.py: one caller at a time, so a
    lane, an OOM fallback and an unload on the same worker wait for each other instead of
    reading each other's replies). A slot's fields are written by the thread that runs
    its entry's job (or the engine thread while the entry is idle)."""

    def __init__(
        self,
        publish: Callable[[Event], None],
        nvml: Callable[[], memory.Nvml | None] = lambda: None,
    ) -> None:
        self._publish = publish
        self._nvml = nvml
        self._slots: dict[str, Slot] = {}
        self._lock = threading.Lock()  # the slots table (not the workers: see the class)
        self._start_lock = threading.Lock()  # one worker start at a time
        # entries paused by a worker order: they take no job. Changed by the engine thread
        # only; read by lanes at their safe points (a set's membership test is atomic).
        self.held: set[str] = set()
        self._fault_counts: str | None = None
        self._refreshed = 0.0
        # A Ray cluster whose nodes run the workers (cluster.py), set by the engine thread
        # before any worker starts; None: workers are this machine's child processes.
        self.cluster: Cluster | None = None

    # -- entries ---------------------------------------------------------------------------
    def configure(self, devices: list[str]) -> list[str]:
        """Set the entries for `devices`; returns their names. Existing workers are kept."""
        names = entry_names(devices)
        threads = cpu_threads(devices)
        with self._lock:
            for name in names:
                slot = self._slots.setdefault(name, Slot(name, None))
                if real_device(name) == "cpu":
                    slot.threads = threads
        return names

    def slot(self, entry: str) -> Slot:
        with self._lock:
            slot = self._slots.get(entry)
            if slot is None:
                slot = self._slots[entry] = Slot(entry, None)
            return slot

    def entries(self) -> list[str]:
        with self._lock:
            return list(self._slots)

    def pids(self) -> set[int]:
        with self._lock:
            return {s.worker.pid for s in self._slots.values() if s.worker and s.worker.alive}

    def alive(self, entry: str) -> bool:
        slot = self._slots.get(entry)
        return slot is not None and slot.worker is not None and slot.worker.alive

    def pid(self, entry: str) -> int:
        """The pid of the entry's current worker process (0 when it has none)."""
        slot = self._slots.get(entry)
        return slot.worker.pid if slot is not None and slot.worker is not None else 0

    def unnoticed_death(self, entry: str) -> str | None:
        """How the entry's worker ended, where it ended by itself between calls and no one
        has said so yet; None while it lives (or when it has none)."""
        slot = self._slots.get(entry)
        worker = slot.worker if slot is not None else None
        if worker is None or worker.alive:
            return None
        return worker.kill().how

    def use_cluster(self, address: str) -> Cluster:
        """The Ray cluster at `address`, connected on first use (and said in the log)."""
        from .cluster import Cluster

        if self.cluster is None or self.cluster.address != address:
            self.cluster = Cluster(address)
            line = f"cluster {address}: workers on {', '.join(self.cluster.entries())}"
            log.info("%s", line)
            self._publish(LogEmitted(level="info", message=line))
        return self.cluster

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, entry: str, preload: tuple[str, ...] = ()) -> WorkerProcess:
        """The entry's worker, started now if it is not running (not waited for). Two
        threads asking at once get the same worker: the check and the start are one step."""
        with self._start_lock:
            return self._start(entry, preload)

    def _start(self, entry: str, preload: tuple[str, ...]) -> WorkerProcess:
        slot = self.slot(entry)
        if slot.worker is not None and slot.worker.alive:
            return slot.worker
        if slot.worker is not None:  # died between calls, not yet noticed: say so now
            dead = slot.worker
            how = dead.kill().how
            self.publish(entry, "died", note=f"died while idle ({how})", pid=dead.pid)
        env = {}
        if os.environ.get("SUBQ_FAULTS"):
            env["SUBQ_FAULT_COUNTS"] = self._counts_file()
        device = real_device(entry)
        remote = self.cluster is not None and self.cluster.owns(entry)
        nvml = None if remote else self._nvml() or memory.shared_nvml()
        index = memory.nvml_index(device, nvml) if nvml else None
        uuid = nvml.uuid(index) if nvml and index is not None else None
        # a GPU worker sees only its own GPU, named by NVML's UUID (the surest name)
        try:
            worker = WorkerProcess(
                device,
                threads=slot.threads,
                gpu_uuid=uuid,
                preload=preload,
                extra_env=env,
                host=self.cluster.host(entry) if remote and self.cluster else None,
            )
        except WorkerError as exc:
            if not remote or self.cluster is None:
                raise
            # its node left the cluster: the job goes back to the queue, blamed on nothing,
            # and the entry takes no more files
            self.cluster.lost(entry)
            self.cluster.check_reachable()  # none left: ClusterError stops the batch
            raise WorkerDied(entry, f"not started: {exc}", blamed=False) from None
        # job_id stays: it is the lane's job (set_busy), which may be what started the worker
        slot.worker, slot.models = worker, ()
        slot.owner = threading.get_ident()
        log.info("worker on %s started (pid %d)", entry, worker.pid)
        self.publish(entry, "starting")
        return worker

    def worker(self, entry: str) -> WorkerProcess:
        """The entry's worker, ready for requests (started and waited for if needed)."""
        worker = self.start(entry)
        if worker.ready is None:
            try:
                worker.wait_ready(READY_TIMEOUT)
            except (WorkerError, TimeoutError) as exc:
                self.end(entry, "did not start")
                raise WorkerError(str(exc)) from None
            self.publish(entry, self.state_of(entry))
        return worker

    def end(self, entry: str, note: str = "") -> int:
        """End the entry's worker (Quit, then signals); returns its tree's RSS before."""
        slot = self._slots.get(entry)
        if slot is None or slot.worker is None:
            return 0
        worker, slot.worker, slot.models = slot.worker, None, ()
        rss = worker.footprint()[0]
        exited = worker.stop()
        log.info("worker on %s ended (%s): %s", entry, exited.how, note)
        self.publish(entry, "stopped", note=note, pid=worker.pid)
        return rss

    def died(self, entry: str, note: str) -> None:
        """The entry's worker is gone by itself: forget it (its models went with it)."""
        slot = self._slots.get(entry)
        if slot is None or slot.worker is None:
            return
        worker, slot.worker, slot.models = slot.worker, None, ()
        if worker.alive:
            worker.kill()
        self.publish(entry, "died", note=note, pid=worker.pid)

    def dead_idle(self) -> list[tuple[str, str]]:
        """Workers that died between calls, noticed now (not when the next job asks them):
        each is forgotten and published as a death on no job; (entry, how) for each."""
        found = []
        for entry in self.entries():
            slot = self._slots[entry]
            worker = slot.worker
            if worker is None or worker.in_call or worker.exited is not None or worker.alive:
                continue
            how = worker.kill().how
            slot.worker, slot.models = None, ()
            self.publish(entry, "died", note=f"died while idle ({how})", pid=worker.pid)
            found.append((entry, how))
        return found

    def close(self) -> None:
        for entry in list(self._slots):
            with contextlib.suppress(Exception):
                self.end(entry, "shutdown")
        if self.cluster is not None:
            self.cluster.close()
        if self._fault_counts:
            with contextlib.suppress(OSError):
                os.unlink(self._fault_counts)

    def _counts_file(self) -> str:
        if self._fault_counts is None:
            fd, self._fault_counts = tempfile.mkstemp(prefix="subq-faults-", suffix=".json")
            os.close(fd)
        return self._fault_counts

    # -- events ----------------------------------------------------------------------------
    def refresh(self, every: float = 2.0) -> None:
        """Republish each live worker's row (its memory moves as it works), every `every` s."""
        now = time.monotonic()
        if now - self._refreshed < every:
            return
        self._refreshed = now
        for entry in self.entries():
            slot = self._slots[entry]
            if slot.worker is not None and slot.worker.alive and slot.worker.ready is not None:
                self.publish(entry, self.state_of(entry))

    def set_busy(self, entry: str, job_id: int | None) -> None:
        slot = self.slot(entry)
        slot.job_id = job_id
        if slot.worker is not None:
            self.publish(entry, self.state_of(entry))

    def set_models(self, entry: str, models: tuple[str, ...]) -> None:
        self.slot(entry).models = models
        if self.alive(entry):
            self.publish(entry, self.state_of(entry))

    def state_of(self, entry: str) -> str:
        """A live worker's state: busy while its lane runs a job (set_busy), else paused
        (a worker order) or idle."""
        if self.slot(entry).job_id is not None:
            return "busy"
        return "paused" if entry in self.held else "idle"

    def publish(self, entry: str, state: str, note: str = "", pid: int | None = None) -> None:
        slot = self.slot(entry)
        worker = slot.worker
        pid = worker.pid if worker is not None else pid
        rss, gpu = worker.footprint(self._nvml()) if worker is not None else (0, None)
        self._publish(
            WorkerChanged(
                device=entry,
                state=state,
                pid=pid,
                job_id=slot.job_id,
                models=slot.models,
                rss_bytes=rss,
                gpu_bytes=gpu,
                note=note,
            )
        )


def describe_failure(error: p.Error) -> str:
    return error.message or error.kind
