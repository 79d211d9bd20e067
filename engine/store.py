"""The queue's durable state in SQLite (WAL): order, states, settings, transcripts, leases.

Every change is committed before the engine acts on it. Several processes may share one
file: a running job carries a lease (leases.py), and every write of a job row is fenced by
it. A runner's writes (its job's state, checkpoints, transcript, translations, outputs)
need the lease to be its own, else `LeaseLost`; anyone's orders (cancel, retry, new
settings) need the job to be held by no other live process, else `HeldElsewhere`, and
the order is left in `orders` for the holder (orders.py). The schema, its migrations and
opening the file are in store_schema.py. The file, its WAL and its lock are 0600.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from . import leases, orders
from .jobs import Job, JobState, Removal, Stage
from .leases import FREE_OR_MINE, HELD_BY_ME
from .private import private_dir, private_file
from .settings import Settings
from .store_data import DoneRecord, HeldElsewhere, JobData, LeaseLost
from .store_schema import StateError, open_db, refuse_foreign

__all__ = ["DoneRecord", "HeldElsewhere", "LeaseLost", "StateError", "Store"]


class Store(JobData):
    """One connection to the state file. Its lock (an RLock) owns the connection: every
    statement runs under it, so the engine thread, the lanes and the heartbeat share it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.moved_aside: Path | None = None
        self.migration_notes: list[str] = []  # for the engine to log once it runs
        self._lock = threading.RLock()
        self._depth = 0  # transactions open in the thread holding the lock (a batch)
        private_dir(self.path.parent)
        refuse_foreign(self.path)
        private_file(self.path)
        # A shared flock on a side file says "a live process has this queue open" for as
        # long as the store is: a damaged file is set aside only when nobody holds it.
        self._in_use = Path(f"{self.path}.lock")
        private_file(self._in_use)
        self._lock_fd = os.open(self._in_use, os.O_RDWR)
        try:
            self._db = self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        for suffix in ("-wal", "-shm"):
            if Path(f"{self.path}{suffix}").exists():
                private_file(Path(f"{self.path}{suffix}"))

    @property
    def worker(self) -> str:  # this process as leases and the history name it ("pid@host")
        return leases.describe(os.getpid(), leases.HOST)

    def _open(self) -> sqlite3.Connection:
        db, self.moved_aside, notes = open_db(self.path, self._held_by_others)
        self.migration_notes += notes
        return db

    def _held_by_others(self) -> bool:  # is the shared flock held by another process?
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        with self._lock:
            self._db.close()
            with suppress(OSError):
                os.close(self._lock_fd)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE so a read-then-write (a lease claim) is atomic across processes.

        Inside another transaction of the same thread it joins that one (one commit for a
        batch: adding hundreds of files costs one fsync); an exception raised there is the
        caller's to handle, and the outer transaction decides what is committed."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._depth = 1
                try:
                    yield self._db
                except BaseException:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise
                finally:
                    self._depth = 0
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc) and "disk I/O" not in str(exc):
                    raise
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise StateError(f"cannot save the queue: disk full at {self.path}") from None

    def between_transactions(self) -> threading.RLock:
        """No transaction of this process opens while inside (it holds the connection)."""
        return self._lock

    # -- jobs ------------------------------------------------------------------------
    def add_jobs(
        self, new: list[tuple[str, str, tuple[str, ...]]], settings: Settings
    ) -> list[Job]:
        """Insert (path, output_base, notes) rows at the end of the queue in one transaction,
        so queuing a folder of hundreds of files costs one commit, not hundreds."""
        now = time.time()
        jobs = []
        settings_json = settings.to_json()
        with self.transaction() as db:
            top = db.execute("SELECT MAX(position) FROM jobs").fetchone()[0] or 0
            for offset, (path, base, notes) in enumerate(new, 1):
                cur = db.execute(
                    "INSERT INTO jobs (path, position, state, settings, output_base, notes, "
                    "created, updated, added_pid, added_proc) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        path,
                        top + offset,
                        JobState.QUEUED.value,
                        settings_json,
                        base,
                        json.dumps(notes),
                        now,
                        now,
                        *leases.me(),
                    ),
                )
                jobs.append(
                    Job(
                        id=int(cur.lastrowid or 0),
                        path=path,
                        settings=settings,
                        position=top + offset,
                        output_base=base,
                        notes=notes,
                        created=now,
                        updated=now,
                    )
                )
        return jobs

    def add_job(self, path: str, settings: Settings) -> Job:
        return self.add_jobs([(path, None, ())], settings)[0]  # type: ignore[list-item]

    def output_bases(self) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT output_base FROM jobs WHERE output_base IS NOT NULL")
            return {r[0] for r in rows.fetchall()}

    def save(self, job: Job, *, holder: bool) -> Job:
        """Persist the job's fields (the row is the truth after a crash), fenced by its lease:
        as its `holder` (LeaseLost when the lease is not ours any more), or as an order on a
        job no other live process holds (HeldElsewhere naming the one that does). The
        position is not written here: it belongs to the queue's order (save_positions),
        so a runner's save never undoes a move made meanwhile by another process."""
        now = time.time()
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE jobs SET state=?, stage=?, error=?, settings=?, duration=?, "
                "outputs=?, stage_times=?, resume_from=?, notes=?, output_base=?, findings=?, "
                f"updated=? WHERE id=? AND {HELD_BY_ME if holder else FREE_OR_MINE}",
                (
                    job.state.value,
                    job.stage.value if job.stage else None,
                    job.error,
                    job.settings.to_json(),
                    job.duration,
                    json.dumps(job.outputs),
                    json.dumps(job.stage_times),
                    job.resume_from,
                    json.dumps(job.notes),
                    job.output_base,
                    _findings_json(job),
                    now,
                    job.id,
                    *leases.me(),
                ),
            )
            if not cur.rowcount:
                self._refused(db, job.id, holder)
            db.execute(
                "INSERT INTO history (job_id, at, worker, state, detail) VALUES (?, ?, ?, ?, ?)",
                (job.id, now, self.worker, job.state.value, job.error),
            )
        return job

    def save_positions(self, jobs: list[Job]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE jobs SET position=?, ordered=1 WHERE id=?",
                [(j.position, j.id) for j in jobs],
            )

    def delete(self, job_id: int) -> None:
        """Remove the job for good, unless another live process runs it (HeldElsewhere)."""
        with self.transaction() as db:
            cur = db.execute(
                f"DELETE FROM jobs WHERE id=? AND {FREE_OR_MINE}", (job_id, *leases.me())
            )
            if not cur.rowcount:
                self._refused(db, job_id, holder=False)
            db.execute("DELETE FROM checkpoint_segments WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM orders WHERE job_id=?", (job_id,))

    def jobs(self, ids: list[int] | None = None) -> list[Job]:
        with self._lock:
            rows = (
                self._db.execute("SELECT * FROM jobs ORDER BY position, id").fetchall()
                if ids is None
                else self._rows_by_id(ids)
            )
            names = [d[0] for d in self._db.execute("SELECT * FROM jobs LIMIT 0").description]
        return jobs_from_rows(names, rows)

    def _rows_by_id(self, ids: list[int]) -> list[Any]:
        marks = ",".join("?" * len(ids))
        return self._db.execute(
            f"SELECT * FROM jobs WHERE id IN ({marks}) ORDER BY position, id", ids
        ).fetchall()

    def job(self, job_id: int) -> Job | None:
        found = self.jobs([job_id])
        return found[0] if found else None

    def latest_for_path(self, path: str) -> Job | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM jobs WHERE path=? ORDER BY id DESC LIMIT 1", (path,)
            ).fetchone()
        return self.job(row[0]) if row else None

    # -- leases (leases.py), each in one transaction ---------------------------------
    def claim(self, job_id: int) -> str | None:
        """Take the job's lease; returns None on success, or the holder's "pid@host"."""
        with self.transaction() as db:
            return leases.claim(db, job_id)

    def release(self, job_id: int) -> None:
        with self.transaction() as db:
            leases.release(db, job_id)

    def heartbeat_and_orders(
        self, job_ids: list[int]
    ) -> tuple[list[int], list[orders.Order], list[int]]:
        """Renew this process's leases and read its jobs' waiting orders, in one
        transaction: (the jobs still held, their orders, the jobs it freed). It frees the
        jobs of holders that are gone, so a dead worker's job is seen as interrupted within
        a beat, not at this worker's next safe point (a window: 30 s on a slow CPU)."""
        with self.transaction() as db:
            freed = leases.recover_stale(db)
            held = leases.renew(db, job_ids)
            return held, orders.pending(db, held) if held else [], freed

    def batch_of_live_others(self) -> set[int]:
        """Queued jobs that another live process queued: its batch, not ours to change."""
        me = leases.me()
        with self._lock:
            rows = self._db.execute(
                "SELECT id, added_pid, added_proc FROM jobs "
                "WHERE state=? AND added_pid IS NOT NULL",
                (JobState.QUEUED.value,),
            ).fetchall()
        return {
            i for i, pid, proc in rows if (pid, proc) != me and proc and leases.proc_of(pid) == proc
        }

    # -- the subtitles subq wrote, beyond their jobs' lives ------------------------------
    def written_sums(self, paths: list[str]) -> dict[str, str]:
        """path -> the size:hash subq wrote there last, for those of `paths` it wrote."""
        marks = ",".join("?" * len(paths))
        with self._lock:
            rows = self._db.execute(f"SELECT path, sum FROM written WHERE path IN ({marks})", paths)
            return dict(rows.fetchall())

    def record_written(self, sums: dict[str, str]) -> None:
        now = time.time()
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO written (path, sum, at) VALUES (?, ?, ?)",
                [(path, value, now) for path, value in sums.items()],
            )

    # -- orders for jobs another process runs (orders.py) -----------------------------
    def add_order(
        self,
        job_id: int,
        kind: str,
        settings: Settings | None = None,
        output_base: str | None = None,
    ) -> int:
        with self.transaction() as db:
            return orders.add(db, job_id, kind, settings, output_base)

    def pending_orders(self, job_ids: list[int] | None = None) -> list[orders.Order]:
        with self._lock:
            return orders.pending(self._db, job_ids)

    def take_orders(self, job_id: int) -> list[orders.Order]:
        """The job's waiting orders, removed as they are read (carried out once)."""
        with self.transaction() as db:
            return orders.take(db, job_id)

    def recover_stale(self) -> list[int]:
        """Jobs left running by a dead worker become interrupted (resumable)."""
        with self.transaction() as db:
            return leases.recover_stale(db)

    def mark_interrupted_now(self, job_ids: list[int]) -> None:
        """For signal handlers: a last, quick write before the process exits."""
        with self.transaction() as db:
            leases.mark_interrupted(db, job_ids)


def jobs_from_rows(names: list[str], rows: list[Any]) -> list[Job]:
    """Rows of the jobs table (`SELECT *`, its column `names`) as jobs."""
    return [_job_from_row(dict(zip(names, r, strict=True))) for r in rows]


def _job_from_row(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        path=row["path"],
        settings=Settings.from_json(row["settings"]),
        state=JobState(row["state"]),
        position=row["position"],
        stage=Stage(row["stage"]) if row["stage"] else None,
        error=row["error"],
        duration=row["duration"],
        outputs=tuple(json.loads(row["outputs"] or "[]")),
        stage_times=tuple(tuple(x) for x in json.loads(row["stage_times"] or "[]")),
        resume_from=row.get("resume_from") or 0.0,
        notes=tuple(json.loads(row.get("notes") or "[]")),
        language=row.get("language"),
        language_probability=row.get("language_probability"),
        output_base=row.get("output_base"),
        worker=f"{row['lease_pid']}@{row['lease_host']}" if row.get("lease_pid") else None,
        created=row["created"],
        updated=row["updated"],
        ordered=bool(row.get("ordered")),
        **_findings(row.get("findings")),
    )


def _findings_json(job: Job) -> str | None:
    if not (job.flags or job.measures or job.removed):
        return None
    data = {"flags": job.flags, "measures": dict(job.measures), "removed": job.removed}
    return json.dumps(data)


def _findings(text: str | None) -> dict[str, Any]:
    """The Job fields of a `findings` column (None before schema 8, or nothing found)."""
    data = json.loads(text) if text else {}
    return {
        "flags": tuple(data.get("flags", ())),
        "measures": tuple(data.get("measures", {}).items()),
        "removed": tuple(Removal._make(r) for r in data.get("removed", ())),
    }
