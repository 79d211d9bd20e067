"""What a model handle is, and how a call to a worker can end badly: the types the model
manager, the pool's callers and the stages share (kept apart so models.py stays one idea).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .model_sizes import fmt_bytes

WHISPER = "whisper"
TRANSLATION = "translation"


def kinds_of(kind: str) -> set[str]:
    """The model kinds an unload order names: one, or "all"."""
    return {WHISPER, TRANSLATION} if kind == "all" else {kind}


class NeedsMemory(Exception):
    def __init__(self, needed: int, free: int) -> None:
        super().__init__(
            f"waiting for GPU memory: needs {fmt_bytes(needed)}, free {fmt_bytes(free)}"
        )
        self.needed = needed
        self.free = free


class RemoteError(Exception):
    """A worker's call failed: `kind` (worker_protocol's error kinds) and its message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class WorkerDied(Exception):
    """The worker on `entry` ended during a call: by itself (kill -9, a crash, the OOM
    killer), or killed by the engine because it hung or broke the channel (`how` says).
    `blamed`: False when it died before it took the call, so the call's job is not why."""

    def __init__(self, entry: str, how: str, *, blamed: bool = True, stopping: bool = False):
        what = how if how.startswith(("hung", "killed")) else f"died ({how})"
        super().__init__(f"worker on {entry} {what}")
        self.entry = entry
        self.how = how
        self.what = what  # "died (signal 9)", "hung (no answer for 180 s)", "killed: ..."
        self.blamed = blamed
        self.stopping = stopping  # killed because it did not end a call after a Stop


@dataclass(frozen=True)
class RemoteModel:
    """A model loaded in the worker on `entry`, as the worker names it."""

    entry: str
    key: str
    backend: str = ""
    pid: int = 0  # the worker process it lives in: a handle outlives its worker otherwise


@dataclass
class Loaded:
    kind: str
    name: str
    device: str  # the entry ("cpu", "cpu#2", "cuda:1")
    model: RemoteModel | Any
    bytes: int
    loaded_at: float
    cuda_delta: int | None = None
