"""Jobs and the states they move through.

A job is immutable: the engine replaces it with `dataclasses.replace` on every change, so a
snapshot handed to another thread can never be seen half-updated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum

from .findings import Removal
from .findings import clock as clock  # a position in a file, as players show it
from .settings import Settings


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def runnable(self) -> bool:
        """States the engine may pick up: interrupted and paused jobs resume where they were."""
        return self in (JobState.QUEUED, JobState.INTERRUPTED, JobState.PAUSED)

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.SKIPPED})


class Stage(StrEnum):
    PROBE = "probe"
    DECODE = "decode"
    WAITING = "waiting"  # waiting for GPU memory before a model load
    TRANSCRIBE = "transcribe"
    TRANSLATE = "translate"
    WRITE = "write"


_S = JobState
ALLOWED: dict[JobState, frozenset[JobState]] = {
    _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED, _S.FAILED}),
    _S.RUNNING: frozenset(
        {_S.DONE, _S.FAILED, _S.CANCELLED, _S.SKIPPED, _S.PAUSED, _S.INTERRUPTED, _S.QUEUED}
    ),
    _S.PAUSED: frozenset({_S.RUNNING, _S.QUEUED, _S.CANCELLED}),
    _S.INTERRUPTED: frozenset({_S.RUNNING, _S.QUEUED, _S.CANCELLED}),
    _S.DONE: frozenset({_S.QUEUED}),
    _S.FAILED: frozenset({_S.QUEUED}),
    _S.CANCELLED: frozenset({_S.QUEUED}),
    _S.SKIPPED: frozenset({_S.QUEUED}),
}


class TransitionError(ValueError):
    """Raised when code asks for a state change the lifecycle does not allow."""


def check_transition(old: JobState, new: JobState) -> None:
    if new not in ALLOWED[old]:
        raise TransitionError(f"job cannot go from {old} to {new}")


@dataclass(frozen=True)
class Job:
    id: int
    path: str
    settings: Settings
    state: JobState = JobState.QUEUED
    position: float = 0.0
    stage: Stage | None = None
    error: str | None = None
    duration: float | None = None
    progress: float = 0.0
    outputs: tuple[str, ...] = ()
    stage_times: tuple[tuple[str, float], ...] = ()
    resume_from: float = 0.0  # seconds of audio already transcribed (checkpoint)
    output_base: str | None = None  # outputs are this path + ".srt", ".de.vtt", ...
    worker: str | None = None  # "pid@host" holding the lease while running
    created: float = 0.0
    updated: float = 0.0
    notes: tuple[str, ...] = field(default=())
    language: str | None = None  # spoken: given by --language, else as detected
    language_probability: float | None = None  # the model's, where it detected it
    ordered: bool = False  # its place was set by the user (a move), never by the engine
    # what its last finished run found (findings.py): quality flags, the values they were
    # judged from, and the junk taken out of its subtitles
    flags: tuple[str, ...] = ()
    measures: tuple[tuple[str, float], ...] = ()
    removed: tuple[Removal, ...] = ()

    @property
    def name(self) -> str:
        from pathlib import PurePath

        return PurePath(self.path).name

    @property
    def fraction_done(self) -> float:
        """The share done as shown: a done job whole. `progress` is live only (the store
        keeps none), so a done job read back from the state file says 0.0."""
        return 1.0 if self.state == JobState.DONE else self.progress

    def moved_to(self, state: JobState, **changes: object) -> Job:
        """A copy in `state`; refuses transitions the lifecycle forbids."""
        if state != self.state:
            check_transition(self.state, state)
        return dataclasses.replace(self, state=state, **changes)  # type: ignore[arg-type]
