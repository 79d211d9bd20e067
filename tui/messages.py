"""The one crossing from engine threads into the UI: events become Textual messages.

The engine calls its subscribers on its own threads and must never wait for the screen, so
the bridge only ever calls `App.post_message` (thread-safe, returns at once; never
`call_from_thread`, which blocks the caller until the UI has run the call). Progress and
memory samples are the high-rate events: the bridge keeps only the latest progress per job
and a short backlog of samples, and the app drains them on a ~4 Hz timer, so a slow SSH
link draws a handful of frames a second however fast the engine reports.

Every other event is kept, in order, in the bridge's backlog, and one `EngineEvents` wake-up
message stands for all of them: a folder of 10,000 files is 10,000 events in a few seconds,
and one Textual message each kept the event loop busy for most of a second at a time. The
app takes the backlog in slices of a few milliseconds and posts itself another wake-up
while some is left, so keys and frames get their turn between slices.

Ownership: `_lock` guards the backlog, the progress map, the samples and `_awake`; the
engine's threads only append, the UI thread only takes.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from subq.engine import Event, MemorySampled, StageProgressed
from textual.message import Message
from textual.message_pump import MessagePump


class EngineEvents(Message):
    """Engine events wait in the bridge's backlog: take them with `EventBridge.take_events`."""


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
        self._events: deque[Event] = deque()
        self._awake = False  # an EngineEvents message is posted and not yet answered

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageProgressed):
            with self._lock:
                self._progress[event.job_id] = event
        elif isinstance(event, MemorySampled):
            with self._lock:
                self._samples.append(event)
        else:
            with self._lock:
                self._events.append(event)
                wake, self._awake = not self._awake, True
            if wake:
                self._target.post_message(EngineEvents())

    def take_events(self, most: int) -> tuple[list[Event], bool]:
        """Up to `most` events in the order published, and whether more wait (UI thread).

        When none are left the next event posts a new wake-up; while some are, the caller
        posts one itself after handling these."""
        with self._lock:
            count = min(most, len(self._events))
            events = [self._events.popleft() for _ in range(count)]
            more = bool(self._events)
            self._awake = more
        return events, more

    def wake(self) -> None:
        """Ask for another turn at the backlog (UI thread, after a slice with more left)."""
        self._target.post_message(EngineEvents())

    def take(self) -> Pending:
        """Everything coalesced since the last call (UI thread, from the flush timer)."""
        with self._lock:
            pending = Pending(self._progress, list(self._samples))
            self._progress = {}
            self._samples.clear()
        return pending
