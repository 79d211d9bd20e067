"""The header line: engine state, job counts, loaded models, pending unloads.

Control calls take effect at the engine's next safe point, which can be seconds away in the
middle of a transcription window; the screen therefore sets the state it asked for at once
("pausing…", "unload pending") and the engine's own EngineStateChanged confirms it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from rich.text import Text
from subq.engine import Job, JobState
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

STATE_WORDS = {
    "running": "running",
    "pausing": "pausing…",
    "paused": "paused",
    "idle": "idle",
    "stopped": "stopped",
    "stopping": "stopping…",
}


class StatusBar(Horizontal):
    """One line: [state] [unload pending] counts │ models."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.state = "idle"
        self.models: tuple[str, ...] = ()
        self.pending: tuple[str, ...] = ()
        # Held, not queried: the flush timer may still tick while the app tears down.
        self.state_label = Label(id="engine-state")
        self.pending_label = Label(id="pending")
        self.counts_label = Label(id="counts")
        self.models_label = Label(id="models")

    def compose(self) -> ComposeResult:
        yield Label(" subq ", id="app-name")
        yield self.state_label
        yield self.pending_label  # before the counts: it must not fall off an 80-column line
        yield self.counts_label
        yield self.models_label

    def show_engine(
        self, state: str, models: Iterable[str] | None = None, pending: Iterable[str] | None = None
    ) -> None:
        """The engine's state; models and pending unloads when given (None keeps them)."""
        self.state = state
        if models is not None:
            self.models = tuple(models)
        if pending is not None:
            self.pending = tuple(pending)
        label = self.state_label
        label.update(f" {STATE_WORDS.get(state, state)} ")
        for name in STATE_WORDS:
            label.set_class(name == state, f"-{name}")
        pending = self.pending_label
        pending.update(f" unload pending: {', '.join(self.pending)} " if self.pending else "")
        pending.display = bool(self.pending)
        text = "models: " + (", ".join(m.replace(":", " ") for m in self.models) or "none")
        self.models_label.update(Text(text))  # a model may be a path: text, not markup

    def show_counts(self, jobs: Iterable[Job], paused: bool) -> None:
        """Jobs per state, always as words; a hint when a paused batch has work left."""
        counts = Counter(j.state for j in jobs)
        order = (
            JobState.RUNNING,
            JobState.QUEUED,
            JobState.PAUSED,
            JobState.INTERRUPTED,
            JobState.DONE,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.SKIPPED,
        )
        parts = [f"{counts[s]} {s.value}" for s in order if counts[s]]
        runnable = sum(counts[s] for s in order if s.runnable)
        text = " · ".join(parts) or "queue empty: press a to add files"
        if paused and runnable and self.state in ("paused", "pausing"):
            text += " │ p resumes"
        self.counts_label.update(f" {text} │ ")
