"""Orders for a job that another process runs, kept in the state file until carried out.

Only a job's holder writes its row (leases.py), so a cancel, a remove or a file given again
with new outputs, asked in one process for a job another process runs, cannot be written
there. It is left here instead. The holder reads its jobs' orders with each heartbeat and
carries them out at its next safe point; if it dies first, whoever runs the job next does;
and the process that asked follows its order until someone took it (`take` deletes it in
the same transaction as it is read, so an order is carried out once). These functions run
inside the store's transactions.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from . import leases
from .settings import Settings

CANCEL, REMOVE, READD = "cancel", "remove", "readd"


@dataclass(frozen=True)
class Order:
    id: int
    job_id: int
    kind: str  # CANCEL, REMOVE or READD
    settings: Settings | None = None  # READD: the request's settings and output base
    output_base: str | None = None
    mine: bool = False  # asked by this process


def add(
    db: sqlite3.Connection,
    job_id: int,
    kind: str,
    settings: Settings | None = None,
    output_base: str | None = None,
) -> int:
    cur = db.execute(
        "INSERT INTO orders (job_id, kind, settings, output_base, at, by_pid, by_proc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            job_id,
            kind,
            settings.to_json() if settings else None,
            output_base,
            time.time(),
            *leases.me(),
        ),
    )
    return int(cur.lastrowid or 0)


def pending(db: sqlite3.Connection, job_ids: list[int] | None = None) -> list[Order]:
    """Orders waiting for these jobs (None: all), oldest first."""
    sql = "SELECT id, job_id, kind, settings, output_base, by_pid, by_proc FROM orders"
    args: list[int] = []
    if job_ids is not None:
        sql += f" WHERE job_id IN ({','.join('?' * len(job_ids))})"
        args = job_ids
    me = leases.me()
    return [
        Order(
            id=row[0],
            job_id=row[1],
            kind=row[2],
            settings=Settings.from_json(row[3]) if row[3] else None,
            output_base=row[4],
            mine=(row[5], row[6]) == me,
        )
        for row in db.execute(sql + " ORDER BY id", args).fetchall()
    ]


def take(db: sqlite3.Connection, job_id: int) -> list[Order]:
    """The job's orders, deleted as they are read: whoever takes them carries them out."""
    found = pending(db, [job_id])
    db.execute("DELETE FROM orders WHERE job_id=?", (job_id,))
    return found
