"""Typed, immutable events the engine publishes to its subscribers.

Subscribers run on the publishing thread (the engine or the memory sampler), so they must
return quickly: the TUI posts a Textual message, the headless printer writes a line.
Every event turns into one JSON object with a `type` for `subq run --events`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .findings import removals
from .jobs import Job, JobState, Stage

log = logging.getLogger("subq.engine")


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"
    at: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **_plain(dataclasses.asdict(self))}


@dataclass(frozen=True)
class JobChanged(Event):
    """A job was added or changed state, stage or position."""

    type: ClassVar[str] = "job_state"
    job: Job
    previous: JobState | None = None

    def to_json(self) -> dict[str, Any]:
        j = self.job
        return {
            "type": self.type,
            "at": self.at,
            "job": j.id,
            "path": j.path,
            "state": j.state.value,
            "previous": self.previous.value if self.previous else None,
            "stage": j.stage.value if j.stage else None,
            "error": j.error,
            "outputs": list(j.outputs),
            "resume_from": j.resume_from,
            "language": j.language,
            "language_probability": j.language_probability,
            "flags": list(j.flags),
            "removed": [r._asdict() for r in removals(j.removed)],
        }


@dataclass(frozen=True)
class JobRemoved(Event):
    type: ClassVar[str] = "job_removed"
    job_id: int


@dataclass(frozen=True)
class QueueReordered(Event):
    type: ClassVar[str] = "queue_order"
    order: tuple[int, ...]


@dataclass(frozen=True)
class StageProgressed(Event):
    """Progress inside a stage; `speed` is seconds of audio per second of wall time."""

    type: ClassVar[str] = "progress"
    job_id: int
    stage: Stage
    fraction: float
    speed: float | None = None
    eta: float | None = None
    elapsed: float = 0.0
    device: str | None = None  # the worker's device entry ("cuda:1", "cpu#2") running it

    @classmethod
    def measure(
        cls,
        job_id: int,
        stage: Stage,
        fraction: float,
        started: float,
        audio_seconds: float | None,
        base: float = 0.0,
    ) -> StageProgressed:
        """Progress with its speed and ETA, from the stage's start (`time.perf_counter`).

        `base`: the fraction done before this start (a resumed file), which took none of
        this run's time: speed and ETA count only what this run did (a file resumed at 60 %
        once showed "122x" and an ETA shorter than its own elapsed time)."""
        elapsed = time.perf_counter() - started
        speed = eta = None
        done = fraction - base
        if audio_seconds and elapsed > 0 and done > 0:
            speed = audio_seconds * done / elapsed
            eta = elapsed * (1 - fraction) / done
        return cls(
            job_id=job_id, stage=stage, fraction=fraction, speed=speed, eta=eta, elapsed=elapsed
        )


@dataclass(frozen=True)
class WorkerChanged(Event):
    """A worker process (one per device entry) started, got busy, went idle, ended or died.

    The memory panel keeps one row per `device`; `rss_bytes` is the worker's process tree
    and `gpu_bytes` what NVML lists for its pid (None where NVML cannot tell). `note` says
    what happened in words ("died (signal 9) at 1:52; resumed", "released: 512 MB back").
    """

    type: ClassVar[str] = "worker"
    device: str
    state: str  # "starting", "idle", "busy", "stopped", "died"
    pid: int | None = None
    job_id: int | None = None
    models: tuple[str, ...] = ()
    rss_bytes: int = 0
    gpu_bytes: int | None = None
    note: str = ""


@dataclass(frozen=True)
class ModelLoaded(Event):
    type: ClassVar[str] = "model_loaded"
    kind: str  # "whisper" or "translation"
    name: str
    device: str
    bytes: int
    seconds: float
    cuda_allocated_delta: int | None = None
    reused: bool = False


@dataclass(frozen=True)
class ModelUnloaded(Event):
    type: ClassVar[str] = "model_unloaded"
    kind: str
    name: str
    device: str
    bytes: int
    reason: str
    rss_before: int
    rss_after: int
    reserved_before: int | None = None
    reserved_after: int | None = None
    nvml_used_before: int | None = None
    nvml_used_after: int | None = None

    @property
    def returned(self) -> int:
        """Bytes handed back to the machine: GPU memory on CUDA, else resident memory."""
        if self.nvml_used_before is not None and self.nvml_used_after is not None:
            return max(0, self.nvml_used_before - self.nvml_used_after)
        if self.reserved_before is not None and self.reserved_after is not None:
            return max(0, self.reserved_before - self.reserved_after)
        return max(0, self.rss_before - self.rss_after)


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: str
    bytes: int | None


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    uuid: str | None
    total: int | None
    used: int | None
    free: int | None
    utilization: int | None
    this_process: int | None
    processes: tuple[GpuProcess, ...] = ()
    torch_allocated: int | None = None
    torch_reserved: int | None = None
    torch_peak: int | None = None
    alloc_retries: int | None = None
    ooms: int | None = None


@dataclass(frozen=True)
class MemorySampled(Event):
    type: ClassVar[str] = "memory"
    rss_bytes: int
    ram_total: int
    ram_available: int
    gpus: tuple[GpuSample, ...] = ()
    gpu_note: str | None = None  # "no GPU: ..." or the CUDA-context caveat


class EngineState(enum.StrEnum):
    """What the batch as a whole is doing; a str, so events serialise as plain text."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model as the app may see it: a copy, never the engine's own record."""

    kind: str
    name: str
    device: str
    bytes: int


@dataclass(frozen=True)
class EngineStateChanged(Event):
    """The batch as a whole: running, pausing, paused or idle; models loaded; pending unloads."""

    type: ClassVar[str] = "engine_state"
    state: str
    models: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogEmitted(Event):
    type: ClassVar[str] = "log"
    level: str
    message: str
    job_id: int | None = None
    earlier: bool = False  # said before this app attached: for its log, not for a toast


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Subscribers:
    """Who hears the events; a subscriber that raises is logged and the others still hear."""

    def __init__(self) -> None:
        self._fns: list[Callable[[Event], None]] = []

    def add(self, fn: Callable[[Event], None]) -> None:
        self._fns.append(fn)

    def remove(self, fn: Callable[[Event], None]) -> None:
        with contextlib.suppress(ValueError):
            self._fns.remove(fn)

    def log(self, level: str, message: str, job_id: int | None = None) -> None:
        """A line for the user (and the log file): "info", "warning" or "error"."""
        getattr(log, "warning" if level == "warning" else "info")(message)
        self.publish(LogEmitted(level=level, message=message, job_id=job_id))

    def publish(self, event: Event) -> None:
        for fn in list(self._fns):
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber failed")
