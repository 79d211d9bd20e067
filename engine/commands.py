"""Control requests: frozen values put on a queue and applied by the engine thread alone.

Every public control call on the engine only enqueues one of these and returns at once, so
no caller (the UI thread above all) ever waits on a model.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .settings import Settings

Where = Literal["up", "down", "top", "bottom"]


@dataclass(frozen=True)
class Add:
    paths: tuple[str, ...]
    settings: Settings | None = None
    expanded: int = 0  # the rest of an earlier Add: how many of `paths` are files found


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Move:
    job_id: int
    where: Where


@dataclass(frozen=True)
class Cancel:
    job_id: int


@dataclass(frozen=True)
class Remove:
    job_id: int


@dataclass(frozen=True)
class Retry:
    job_id: int


@dataclass(frozen=True)
class ClearFinished:
    pass


@dataclass(frozen=True)
class Unload:
    kind: str  # "whisper", "translation" or "all"


@dataclass(frozen=True)
class ReleaseGpu:
    pass


@dataclass(frozen=True)
class WorkerOrder:
    """One worker alone: "pause" (its job goes back to the queue with its checkpoint and
    runs on another worker, or waits; it takes no new job), "resume", or "release" (paused,
    its models unloaded and its process ended, so its device's memory goes back)."""

    entry: str
    order: Literal["pause", "resume", "release"]


@dataclass(frozen=True)
class StartAnyway:
    job_id: int


@dataclass(frozen=True)
class UpdateSettings:
    settings: Settings


@dataclass(frozen=True)
class Wake:
    """No-op: wakes the engine loop (on shutdown) without changing anything."""


Command = (
    WorkerOrder
    | Add
    | Pause
    | Resume
    | Move
    | Cancel
    | Remove
    | Retry
    | ClearFinished
    | Unload
    | ReleaseGpu
    | StartAnyway
    | UpdateSettings
    | Wake
)


class Inbox:
    """Orders waiting for the engine thread, and the idle signal paired with them: an order
    sent clears `idle` under the same lock the engine holds to set it, so none is missed."""

    def __init__(self) -> None:
        self._orders: queue.Queue[Command] = queue.Queue()
        self._lock = threading.Lock()
        self.idle = threading.Event()

    def send(self, command: Command) -> None:
        with self._lock:
            self.idle.clear()
            self._orders.put(command)

    def wake(self) -> None:
        self._orders.put(Wake())

    def drain(self, apply: Callable[[Command], None], block: float | None = None) -> None:
        """Apply every waiting order; with `block`, wait up to that long for the first."""
        try:
            first = self._orders.get(timeout=block) if block else self._orders.get_nowait()
        except queue.Empty:
            return
        apply(first)
        while True:
            try:
                apply(self._orders.get_nowait())
            except queue.Empty:
                return

    def set_idle_if_empty(self) -> None:
        with self._lock:
            if self._orders.empty():
                self.idle.set()
