"""The one crossing from engine threads into the UI: events become Textual messages.

The engine calls its subscribers on its own threads and must never wait for the screen, so
the bridge only ever calls `App.post_message` (thread-safe, returns at once; never
`call_from_thread`, which blocks the caller until the UI has run the call). Progress and
memory samples are the high-rate events: the bridge keeps only the latest progress per job
and a short backlog of samples, and the app drains them on a ~4 Hz timer, so a slow SSH
link draws a handful of frames a second however fast the engine reports.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from subq.engine import Event, MemorySampled, StageProgressed
from textual.message import Message
from textual.message_pump import MessagePump


class EngineEvent(Message):
    """An engine event (anything but progress and memory samples), handled in order."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


@dataclass
class Pending:
    """What piled up since the last flush: the newest progress per job, recent samples."""

    progress: dict[int, StageProgressed] = field(default_factory=dict)
    samples: list[MemorySampled] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.progress or self.samples)


class EventBridge:
    """An engine subscriber: call it from any thread; it never blocks on the UI."""

    def __init__(self, target: MessagePump, max_samples: int = 64) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._progress: dict[int, StageProgressed] = {}
        self._samples: deque[MemorySampled] = deque(maxlen=max_samples)

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageProgressed):
            with self._lock:
                self._progress[event.job_id] = event
        elif isinstance(event, MemorySampled):
            with self._lock:
                self._samples.append(event)
        else:
            self._target.post_message(EngineEvent(event))

    def take(self) -> Pending:
        """Everything coalesced since the last call (UI thread, from the flush timer)."""
        with self._lock:
            pending = Pending(self._progress, list(self._samples))
            self._progress = {}
            self._samples.clear()
        return pending
