"""Leases: which worker runs a job, so several processes can share one state file.

A running job carries a lease (pid, host, heartbeat). A lease whose process is gone (on
this host) or whose heartbeat is older than LEASE_TIMEOUT frees the job for anyone. These
run inside the store's transactions (BEGIN IMMEDIATE), so a claim is atomic.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time

from . import procs
from .jobs import JobState

LEASE_TIMEOUT = 30.0  # seconds without a heartbeat before another worker may take the job
HOST = socket.gethostname()
WORKER = f"{os.getpid()}@{HOST}"


def stale(pid: int, host: str | None, beat: float | None, now: float) -> bool:
    if beat is None or now - beat > LEASE_TIMEOUT:
        return True
    return host == HOST and not procs.alive(pid)


def claim(db: sqlite3.Connection, job_id: int, worker: str) -> str | None:
    """Take the job's lease; returns None on success, or the holder's "pid@host"."""
    now = time.time()
    row = db.execute(
        "SELECT lease_pid, lease_host, lease_heartbeat FROM jobs WHERE id=?", (job_id,)
    ).fetchone()
    if row is None:
        return "deleted"
    pid, host, beat = row
    if pid is not None and not stale(pid, host, beat, now) and f"{pid}@{host}" != worker:
        return f"{pid}@{host}"
    db.execute(
        "UPDATE jobs SET lease_pid=?, lease_host=?, lease_started=?, lease_heartbeat=? WHERE id=?",
        (os.getpid(), HOST, now, now, job_id),
    )
    return None


def renew(db: sqlite3.Connection, job_ids: list[int]) -> list[int]:
    """Renew this worker's leases; returns the jobs whose lease it still holds."""
    held = []
    for i in job_ids:
        cur = db.execute(
            "UPDATE jobs SET lease_heartbeat=? WHERE id=? AND lease_pid=? AND lease_host=?",
            (time.time(), i, os.getpid(), HOST),
        )
        if cur.rowcount:
            held.append(i)
    return held


def release(db: sqlite3.Connection, job_id: int) -> None:
    db.execute(
        "UPDATE jobs SET lease_pid=NULL, lease_host=NULL, lease_started=NULL, "
        "lease_heartbeat=NULL WHERE id=? AND lease_pid=? AND lease_host=?",
        (job_id, os.getpid(), HOST),
    )


def recover_stale(db: sqlite3.Connection) -> list[int]:
    """Jobs left running by a dead worker become interrupted (resumable)."""
    now = time.time()
    freed = []
    for job_id, pid, host, beat in db.execute(
        "SELECT id, lease_pid, lease_host, lease_heartbeat FROM jobs WHERE state=?",
        (JobState.RUNNING.value,),
    ).fetchall():
        if pid is None or stale(pid, host, beat, now):
            gone = f"worker {pid}@{host} gone" if pid is not None else "worker gone"
            db.execute(
                "UPDATE jobs SET state=?, error=?, lease_pid=NULL, lease_host=NULL, "
                "lease_heartbeat=NULL, updated=? WHERE id=?",
                (JobState.INTERRUPTED.value, f"{gone}; resumes from its checkpoint", now, job_id),
            )
            freed.append(job_id)
    return freed


def mark_interrupted(db: sqlite3.Connection, job_ids: list[int]) -> None:
    """For signal handlers: a last, quick write before the process exits."""
    db.executemany(
        "UPDATE jobs SET state=?, lease_pid=NULL, lease_host=NULL, lease_heartbeat=NULL "
        "WHERE id=? AND state=?",
        [(JobState.INTERRUPTED.value, i, JobState.RUNNING.value) for i in job_ids],
    )
