"""The queue a state file keeps, looked at with no engine running: whether there is work to
come back to (the app starts paused then) and the jobs themselves (`subq status` after
`subq stop`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .jobs import Job, JobState
from .store import StateError, Store, jobs_from_rows


def saved_work(path: Path) -> bool:
    """Is there a queue to come back to? The app asks before an engine exists, to start paused."""
    if not path.exists():
        return False
    store = Store(path)
    try:
        return any(j.state.runnable or j.state == JobState.RUNNING for j in store.jobs())
    finally:
        store.close()


def saved_jobs(path: Path) -> list[Job]:
    """The queue kept in the state file at `path` (none if there is no file), for `subq
    status` with no engine. Read only: a look never migrates, repairs or moves the file
    (the next engine does); one this version cannot read is a StateError."""
    if not path.exists():
        return []
    from urllib.request import pathname2url

    try:
        db = sqlite3.connect(f"file:{pathname2url(str(path))}?mode=ro", uri=True, timeout=5)
        try:
            cursor = db.execute("SELECT * FROM jobs ORDER BY position, id")
            return jobs_from_rows([d[0] for d in cursor.description], cursor.fetchall())
        finally:
            db.close()
    except (sqlite3.Error, KeyError, ValueError) as exc:
        raise StateError(f"{path}: cannot read the queue it keeps ({exc})") from None
