"""The queue's durable state in SQLite (WAL): order, states, settings, transcripts, leases.

Every change is committed before the engine acts on it. Several workers (processes) may
share one file: a running job carries a lease (leases.py). The schema, its migrations and
opening the file (a corrupt one is moved aside) are in store_schema.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import leases
from .jobs import Job, JobState, Stage
from .settings import Settings
from .store_schema import StateError, open_db


@dataclass(frozen=True)
class DoneRecord:
    """A finished run: the input's content fingerprint, the output settings' key, and the
    size:hash of every file written (path -> sum)."""

    input: str
    key: str | None
    sums: dict[str, str]


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.moved_aside: Path | None = None
        self.migration_notes: list[str] = []  # for the engine to log once it runs
        self.worker = leases.WORKER
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db, self.moved_aside, notes = open_db(self.path)
        self.migration_notes += notes
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE so a read-then-write (a lease claim) is atomic across processes."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc) and "disk I/O" not in str(exc):
                    raise
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise StateError(f"cannot save the queue: disk full at {self.path}") from None

    # -- jobs ------------------------------------------------------------------------
    def add_jobs(
        self, new: list[tuple[str, str, tuple[str, ...]]], settings: Settings
    ) -> list[Job]:
        """Insert (path, output_base, notes) rows at the end of the queue in one transaction,
        so queuing a folder of hundreds of files costs one commit, not hundreds."""
        now = time.time()
        jobs = []
        with self.transaction() as db:
            top = db.execute("SELECT MAX(position) FROM jobs").fetchone()[0] or 0
            for offset, (path, base, notes) in enumerate(new, 1):
                cur = db.execute(
                    "INSERT INTO jobs (path, position, state, settings, output_base, notes, "
                    "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        path,
                        top + offset,
                        JobState.QUEUED.value,
                        settings.to_json(),
                        base,
                        json.dumps(notes),
                        now,
                        now,
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

    def save(self, job: Job) -> Job:
        """Persist every field of the job (the row is the truth after a crash)."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET position=?, state=?, stage=?, error=?, settings=?, duration=?, "
                "outputs=?, stage_times=?, resume_from=?, notes=?, output_base=?, updated=? "
                "WHERE id=?",
                (
                    job.position,
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
                    now,
                    job.id,
                ),
            )
            db.execute(
                "INSERT INTO history (job_id, at, worker, state, detail) VALUES (?, ?, ?, ?, ?)",
                (job.id, now, self.worker, job.state.value, job.error),
            )
        return job

    def save_positions(self, jobs: list[Job]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE jobs SET position=? WHERE id=?", [(j.position, j.id) for j in jobs]
            )

    def delete(self, job_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
            db.execute("DELETE FROM checkpoint_segments WHERE job_id=?", (job_id,))

    def jobs(self, ids: list[int] | None = None) -> list[Job]:
        with self._lock:
            rows = (
                self._db.execute("SELECT * FROM jobs ORDER BY position, id").fetchall()
                if ids is None
                else self._rows_by_id(ids)
            )
            names = [d[0] for d in self._db.execute("SELECT * FROM jobs LIMIT 0").description]
        return [_job_from_row(dict(zip(names, r, strict=True))) for r in rows]

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

    # -- per-job data: transcript, checkpoint, translations, done signature --------
    def _get(self, job_id: int, column: str) -> Any:
        with self._lock:
            row = self._db.execute(f"SELECT {column} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row[0] if row else None

    def _set(self, job_id: int, **values: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in values)
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*values.values(), job_id))

    def transcript(self, job_id: int, key: str) -> tuple[list[Any], str | None] | None:
        if self._get(job_id, "transcript_key") != key:
            return None
        data = self._get(job_id, "transcript")
        return (json.loads(data), self._get(job_id, "language")) if data else None

    def set_transcript(
        self, job_id: int, key: str, segments: list[Any], language: str | None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET transcript=?, transcript_key=?, language=?, checkpoint=NULL, "
                "translations='{}' WHERE id=?",
                (json.dumps(segments), key, language, job_id),
            )
            db.execute("DELETE FROM checkpoint_segments WHERE job_id=?", (job_id,))

    def checkpoint(self, job_id: int, key: str) -> dict[str, Any] | None:
        held, checkpoint = self.saved_checkpoint(job_id)
        return checkpoint if held == key else None

    def saved_checkpoint(self, job_id: int) -> tuple[str | None, dict[str, Any] | None]:
        """(the transcript key it belongs to, the checkpoint), whatever the key: (None, None)
        when there is none."""
        with self._lock:
            row = self._db.execute("SELECT checkpoint FROM jobs WHERE id=?", (job_id,)).fetchone()
            if not row or not row[0]:
                return None, None
            stored = json.loads(row[0])
            checkpoint = stored.get("checkpoint")
            if checkpoint is not None and "segment_count" in checkpoint:
                count = checkpoint.pop("segment_count")
                rows = self._db.execute(
                    "SELECT segment FROM checkpoint_segments WHERE job_id=? AND n<? ORDER BY n",
                    (job_id, count),
                ).fetchall()
                checkpoint["segments"] = [json.loads(r[0]) for r in rows]
        return stored.get("key"), checkpoint

    def set_checkpoint(self, job_id: int, key: str, checkpoint: dict[str, Any] | None) -> None:
        """Store the checkpoint: its segments one row each, writing only those after the
        ones already stored (a checkpoint extends the last one; one that does not, a new
        run's, replaces them), so each window writes what it added, not the whole file."""
        with self.transaction() as db:
            if not checkpoint:
                db.execute("UPDATE jobs SET checkpoint=NULL, resume_from=0 WHERE id=?", (job_id,))
                db.execute("DELETE FROM checkpoint_segments WHERE job_id=?", (job_id,))
                return
            segments = checkpoint.get("segments", ())
            have = _stored_prefix(db, job_id, segments)
            db.execute("DELETE FROM checkpoint_segments WHERE job_id=? AND n>=?", (job_id, have))
            db.executemany(  # only the new ones are serialised, not the whole list again
                "INSERT INTO checkpoint_segments (job_id, n, segment) VALUES (?, ?, ?)",
                [(job_id, n, json.dumps(seg)) for n, seg in enumerate(segments[have:], have)],
            )
            head = {k: v for k, v in checkpoint.items() if k != "segments"}
            head["segment_count"] = len(segments)
            db.execute(
                "UPDATE jobs SET checkpoint=?, resume_from=? WHERE id=?",
                (json.dumps({"key": key, "checkpoint": head}), checkpoint["seek"], job_id),
            )

    def translations(self, job_id: int) -> dict[str, list[str]]:
        return json.loads(self._get(job_id, "translations") or "{}")

    def set_translation(self, job_id: int, key: str, texts: list[str]) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT translations FROM jobs WHERE id=?", (job_id,)).fetchone()
            data = json.loads(row[0] or "{}") if row else {}
            data[key] = texts
            db.execute("UPDATE jobs SET translations=? WHERE id=?", (json.dumps(data), job_id))

    def done_record(self, job_id: int) -> DoneRecord | None:
        """What the last finished run wrote, from which input and with which settings."""
        with self._lock:
            row = self._db.execute(
                "SELECT input_sig, done_key, output_sums FROM jobs WHERE id=?", (job_id,)
            ).fetchone()
        if not row or row[0] is None:
            return None
        return DoneRecord(row[0], row[1], json.loads(row[2] or "{}"))

    def set_done_record(self, job_id: int, record: DoneRecord | None) -> None:
        if record is None:
            self._set(job_id, input_sig=None, done_key=None, output_sums=None)
            return
        self._set(
            job_id,
            input_sig=record.input,
            done_key=record.key,
            output_sums=json.dumps(record.sums),
        )

    # -- leases (leases.py), each in one transaction ---------------------------------
    def claim(self, job_id: int) -> str | None:
        """Take the job's lease; returns None on success, or the holder's "pid@host"."""
        with self.transaction() as db:
            return leases.claim(db, job_id, self.worker)

    def heartbeat(self, job_ids: list[int]) -> list[int]:
        """Renew this worker's leases; returns the jobs whose lease it still holds."""
        with self.transaction() as db:
            return leases.renew(db, job_ids)

    def release(self, job_id: int) -> None:
        with self.transaction() as db:
            leases.release(db, job_id)

    def recover_stale(self) -> list[int]:
        """Jobs left running by a dead worker become interrupted (resumable)."""
        with self.transaction() as db:
            return leases.recover_stale(db)

    def mark_interrupted_now(self, job_ids: list[int]) -> None:
        """For signal handlers: a last, quick write before the process exits."""
        with self.transaction() as db:
            leases.mark_interrupted(db, job_ids)


def saved_work(path: Path) -> bool:
    """Is there a queue to come back to? The app asks before an engine exists, to start paused."""
    if not path.exists():
        return False
    store = Store(path)
    try:
        return any(j.state.runnable or j.state == JobState.RUNNING for j in store.jobs())
    finally:
        store.close()


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
        output_base=row.get("output_base"),
        worker=f"{row['lease_pid']}@{row['lease_host']}" if row.get("lease_pid") else None,
        created=row["created"],
        updated=row["updated"],
    )


def _stored_prefix(db: Any, job_id: int, segments: Sequence[Any]) -> int:
    """How many of `segments` are stored already: all that are stored, if the last stored
    one is the same segment at the same place (a checkpoint extends the one before), else
    none."""
    row = db.execute(
        "SELECT n, segment FROM checkpoint_segments WHERE job_id=? ORDER BY n DESC LIMIT 1",
        (job_id,),
    ).fetchone()
    if row is None:
        return 0
    last, text = row
    return last + 1 if last < len(segments) and json.dumps(segments[last]) == text else 0
