"""Adding files to the queue in turns, so a batch of 10,000 never holds up the orders sent
while it is added (part of JobQueue, queue.py; the same lock and ownership rule)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import media
from .commands import Add
from .events import Event, JobChanged
from .jobs import Job
from .options import WriteOptions
from .outputs import choose_base
from .queue_shared import _locked
from .settings import Settings
from .store import Store

# Seconds of adding per engine turn (one commit); the rest waits behind any order sent
# meanwhile, so a pause or a key press is applied within about this long during a big add.
ADD_TURN = 0.02
ADD_MAX = 250  # files queued per turn: inserting them is as long again as finding them


class Adding:
    """Mixed into JobQueue."""

    store: Store
    _log: Callable[..., None]
    _publish: Callable[[Event], None]

    def jobs(self) -> list[Job]:
        raise NotImplementedError

    def _put(self, job: Job) -> None:
        raise NotImplementedError

    def _readd(self, job: Job, settings: Settings, taken: set[str] | None = None) -> None:
        raise NotImplementedError

    @_locked
    def add(
        self,
        paths: Sequence[str],
        settings: Settings,
        expanded: int = 0,
        later: Callable[[Add], None] | None = None,
    ) -> tuple[tuple[str, ...], int]:
        """One turn of adding (the first `expanded` of `paths` are files found, the rest
        arguments): find files, or queue up to ADD_MAX in one transaction, for ADD_TURN s;
        the rest (and how many of it are files) goes to `later` as the next turn's Add, and
        is returned, so orders sent meanwhile wait one turn at most."""
        settings = settings.validate()
        files, args = list(paths[:expanded]), list(paths[expanded:])
        started = time.monotonic()
        if not files:
            while args and time.monotonic() - started < ADD_TURN:
                found = [str(p) for p in media.expand_paths(args[:256])]
                counts = collections.Counter(found)
                for key in [k for k, n in counts.items() if n > 1]:
                    self._log("info", f"{key}: given twice; added once")
                files += counts
                del args[:256]
            return self._later(later, (*files, *args), len(files), settings)
        known = {j.path: j for j in self.jobs()}
        taken = self.store.output_bases()
        new: list[tuple[str, str, tuple[str, ...]]] = []
        done = 0
        with self.store.transaction():
            for key in files:
                if done >= ADD_MAX or (done and time.monotonic() - started > ADD_TURN):
                    break
                done += 1
                existing = known.get(key) or self.store.latest_for_path(key)
                if existing is not None:
                    self._readd(existing, settings, taken)
                    continue
                base, note = choose_base(Path(key), WriteOptions.of(settings), taken)
                taken.add(base)
                new.append((key, base, (note,) if note else ()))
            added = self.store.add_jobs(new, settings)
        rest = (*files[done:], *args)
        for job in added:
            for note in job.notes:
                self._log("warning", note, job.id)
            self._put(job)
            self._publish(JobChanged(job=job))
        return self._later(later, rest, len(files) - done, settings)

    @staticmethod
    def _later(
        later: Callable[[Add], None] | None, rest: tuple[str, ...], found: int, s: Settings
    ) -> tuple[tuple[str, ...], int]:
        if rest and later is not None:
            later(Add(rest, s, found))
        return rest, found
