"""What one job's stages need from whoever runs them: the `JobContext` protocol, and the
`StopRequested` a safe point raises. The pipeline owns this contract; the engine's side of
it is context.py, a test's is a stand-in."""

from __future__ import annotations

from typing import Protocol

from . import memory
from .jobs import Job, JobState, Stage
from .models import ModelManager, NeedsMemory
from .store import Store


class StopRequested(Exception):
    """Raised at a safe point: the job stops here in `state` (paused, cancelled, interrupted)."""

    def __init__(self, state: JobState, reason: str = "") -> None:
        super().__init__(reason)
        self.state = state


class JobContext(Protocol):
    """All a job's stages need from whoever runs them (the engine, or a test's stand-in).

    The pipeline knows nothing else of the engine: it reads and writes the job's stored work
    through `store`, loads models through `models`, and reports through the methods below.
    """

    store: Store
    models: ModelManager

    def safe_point(self, job: Job) -> None:
        """Apply waiting orders; raise StopRequested if the job must stop here."""

    def enter_stage(self, job: Job, stage: Stage) -> Job:
        """A safe point, then the job as committed in `stage` with its progress at 0."""
        ...

    def progress(
        self,
        job: Job,
        stage: Stage,
        fraction: float,
        started: float,
        audio_seconds: float | None,
        base: float = 0.0,
    ) -> None: ...

    def log(self, level: str, message: str, job_id: int | None = None) -> None: ...

    def oom(self, job: Job, message: str) -> None:
        """Note an out-of-memory retry (counted for the batch's summary)."""

    def wait_for_memory(self, job: Job, error: NeedsMemory) -> bool:
        """Wait a while for room; True once the user said start anyway."""
        ...

    def started_anyway(self, job_id: int) -> bool:
        """Whether the user told this job to load its model without waiting for room."""
        ...

    def nvml(self) -> memory.Nvml | None: ...
