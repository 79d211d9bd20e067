"""Control requests: frozen values put on a queue and applied by the engine thread alone.

Every public control call on the engine only enqueues one of these and returns at once, so
no caller (the UI thread above all) ever waits on a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .settings import Settings

Where = Literal["up", "down", "top", "bottom"]


@dataclass(frozen=True)
class Add:
    paths: tuple[str, ...]
    settings: Settings | None = None


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
class StartAnyway:
    job_id: int


@dataclass(frozen=True)
class UpdateSettings:
    settings: Settings


@dataclass(frozen=True)
class Wake:
    """No-op: wakes the engine loop (on shutdown) without changing anything."""


Command = (
    Add
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
