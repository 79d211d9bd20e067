"""A job's stored work, which only its holder writes: transcript, checkpoint, translations,
and the record of the outputs it wrote (part of Store, store.py; its lock owns the
connection these use)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from . import leases
from .leases import HELD_BY_ME


class LeaseLost(Exception):
    """This process no longer holds the job it was running: it must stop without writing."""


class HeldElsewhere(Exception):
    """Another live process runs the job; str() names it ("pid@host")."""


@dataclass(frozen=True)
class DoneRecord:
    """A finished run: the input's content fingerprint, the output settings' key, and the
    size:hash of every file written (path -> sum)."""

    input: str
    key: str | None
    sums: dict[str, str]


class JobData:
    """The per-job columns beside the queue's own; Store supplies the connection."""

    _lock: threading.RLock
    _db: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _refused(self, db: sqlite3.Connection, job_id: int, holder: bool) -> None:
        """Say why a fenced write changed no row (a deleted row is no error: it is gone)."""
        if db.execute("SELECT 1 FROM jobs WHERE id=?", (job_id,)).fetchone() is None:
            return
        if holder:
            raise LeaseLost(f"its lease was taken by {leases.holder(db, job_id) or 'another'}")
        raise HeldElsewhere(leases.holder(db, job_id) or "another process")

    # -- per-job data: transcript, checkpoint, translations, done signature --------
    def _get(self, job_id: int, column: str) -> Any:
        with self._lock:
            row = self._db.execute(f"SELECT {column} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row[0] if row else None

    def _set(self, job_id: int, **values: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in values)
        with self.transaction() as db:
            self._as_holder(db, f"UPDATE jobs SET {cols} WHERE id=?", (*values.values(), job_id))

    def _as_holder(self, db: sqlite3.Connection, sql: str, args: Sequence[Any]) -> None:
        """A runner's write of its job's row (`sql` ends in "WHERE id=?"): LeaseLost when
        another process holds the job now, so it is never written over."""
        cur = db.execute(f"{sql} AND {HELD_BY_ME}", (*args, *leases.me()))
        if not cur.rowcount:
            self._refused(db, args[-1], holder=True)

    def transcript(
        self, job_id: int, key: str
    ) -> tuple[list[Any], str | None, float | None] | None:
        """(segments, language, its probability) stored for `key`, or None."""
        if self._get(job_id, "transcript_key") != key:
            return None
        data = self._get(job_id, "transcript")
        if not data:
            return None
        return (
            json.loads(data),
            self._get(job_id, "language"),
            self._get(job_id, "language_probability"),
        )

    def set_transcript(
        self,
        job_id: int,
        key: str,
        segments: list[Any],
        language: str | None,
        probability: float | None = None,
    ) -> None:
        with self.transaction() as db:
            self._as_holder(
                db,
                "UPDATE jobs SET transcript=?, transcript_key=?, language=?, "
                "language_probability=?, checkpoint=NULL, translations='{}' WHERE id=?",
                (json.dumps(segments), key, language, probability, job_id),
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
                self._as_holder(
                    db, "UPDATE jobs SET checkpoint=NULL, resume_from=0 WHERE id=?", (job_id,)
                )
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
            self._as_holder(  # last: refused, the segments above roll back with it
                db,
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
            self._as_holder(
                db, "UPDATE jobs SET translations=? WHERE id=?", (json.dumps(data), job_id)
            )

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
