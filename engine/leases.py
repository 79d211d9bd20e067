"""The running job's lease, kept fresh by a heartbeat thread.

Without a fresh lease another worker may take the job, so a lease that cannot be renewed
(or was taken) is noted in `lost`, and the engine stops the job at its next safe point.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .store import Store

HEARTBEAT = 3.0  # seconds between renewals; the store's LEASE_TIMEOUT is ten of these


class Heartbeat:
    def __init__(
        self, store: Store, running: Callable[[], int | None], stopping: threading.Event
    ) -> None:
        self._store = store
        self._running = running
        self._stopping = stopping
        self.lost: str | None = None  # why the running job's lease is gone, if it is

    def start(self) -> None:
        threading.Thread(target=self._run, name="subq-heartbeat", daemon=True).start()

    def _run(self) -> None:
        while not self._stopping.wait(HEARTBEAT):
            running = self._running()
            if running is None:
                continue
            try:
                held = self._store.heartbeat([running])
            except Exception as exc:
                held, reason = [], f"cannot renew its lease: {exc}"
            else:
                reason = "its lease was taken by another worker"
            if running not in held and self._running() == running:
                self.lost = f"{reason}; it stops here and resumes later"
