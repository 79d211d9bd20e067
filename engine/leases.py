"""Leases: which process runs a job, so several processes can share one state file.

A running job carries a lease naming its holder as a process that can be checked: the
host name (shown to people), the pid, and `lease_proc`, which is the kernel's boot id, the
pid namespace and the process's start time. A pid alone is not an identity: containers
that share a host name but not a pid namespace each see the other's pids as dead, and a
pid is reused after its process ends. So:

- a holder we can check (same boot and pid namespace) is gone only when no process with
  that pid *and that start time* exists; a stopped one (Ctrl-Z) keeps its jobs;
- any other holder (another machine, another container, an older subq that wrote no
  `lease_proc`) is gone when its heartbeat is older than LEASE_TIMEOUT.

These run inside the store's transactions (BEGIN IMMEDIATE), so a claim is atomic. The
SQL fragments `HELD_BY_ME` and `FREE_OR_MINE` are the fences every write of a job row
carries (store.py): only the holder writes a held job.
"""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import time
from pathlib import Path

from . import procs
from .jobs import JobState

LEASE_TIMEOUT = 30.0  # seconds without a heartbeat before an uncheckable holder is gone
HOST = socket.gethostname()

# `?` placeholders take `me()` as (pid, proc)
HELD_BY_ME = "(lease_pid=? AND lease_proc IS ?)"
FREE_OR_MINE = "(lease_pid IS NULL OR (lease_pid=? AND lease_proc IS ?))"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> str:
    """The process's start time since boot (clock ticks), or "" where /proc cannot say."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name may hold ") "


def _pid_namespace(pid: int | str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


@functools.cache
def _machine() -> str:
    """This kernel and pid namespace: where a pid means the same process as here."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    return f"{boot}/{_pid_namespace('self')}" if boot else ""


def proc_of(pid: int) -> str | None:
    """The checkable identity of `pid` here, or None where this system cannot give one."""
    machine, started = _machine(), start_ticks(pid)
    return f"{machine}/{started}" if machine and started else None


def me() -> tuple[int, str | None]:
    """(pid, proc) of this process, as leases store them. Read per call: a forked child
    (a test's second user) is another process."""
    return os.getpid(), proc_of(os.getpid())


def describe(pid: int | None, host: str | None) -> str:
    return f"{pid}@{host}"


def gone(pid: int, host: str | None, proc: str | None, beat: float | None, now: float) -> bool:
    """Is the holder of a lease gone, so its job may be taken?"""
    machine = _machine()
    if proc and machine and proc.rsplit("/", 1)[0] == machine:
        return proc_of(pid) != proc  # checkable: gone only when that very process is
    if beat is None or now - beat > LEASE_TIMEOUT:
        return True
    # no identity (an older subq, or no /proc): the old rule, a dead pid on this host
    return proc is None and host == HOST and not procs.alive(pid)


def holder(db: sqlite3.Connection, job_id: int) -> str | None:
    """Who holds the job's lease, if a live process other than this one does."""
    row = db.execute(
        "SELECT lease_pid, lease_host, lease_proc, lease_heartbeat FROM jobs WHERE id=?",
        (job_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    pid, host, proc, beat = row
    if (pid, proc) == me() or gone(pid, host, proc, beat, time.time()):
        return None
    return describe(pid, host)


def claim(db: sqlite3.Connection, job_id: int) -> str | None:
    """Take the job's lease; returns None on success, or the holder's "pid@host"."""
    if db.execute("SELECT 1 FROM jobs WHERE id=?", (job_id,)).fetchone() is None:
        return "deleted"
    taken = holder(db, job_id)
    if taken is not None:
        return taken
    now = time.time()
    db.execute(
        "UPDATE jobs SET lease_pid=?, lease_proc=?, lease_host=?, lease_started=?, "
        "lease_heartbeat=? WHERE id=?",
        (*me(), HOST, now, now, job_id),
    )
    return None


def renew(db: sqlite3.Connection, job_ids: list[int]) -> list[int]:
    """Renew this process's leases; returns the jobs whose lease it still holds."""
    held = []
    for i in job_ids:
        cur = db.execute(
            f"UPDATE jobs SET lease_heartbeat=? WHERE id=? AND {HELD_BY_ME}",
            (time.time(), i, *me()),
        )
        if cur.rowcount:
            held.append(i)
    return held


def release(db: sqlite3.Connection, job_id: int) -> None:
    db.execute(
        "UPDATE jobs SET lease_pid=NULL, lease_proc=NULL, lease_host=NULL, "
        f"lease_started=NULL, lease_heartbeat=NULL WHERE id=? AND {HELD_BY_ME}",
        (job_id, *me()),
    )


def recover_stale(db: sqlite3.Connection) -> list[int]:
    """Jobs left running by a holder that is gone become interrupted (resumable)."""
    now = time.time()
    freed = []
    for job_id, pid, host, proc, beat in db.execute(
        "SELECT id, lease_pid, lease_host, lease_proc, lease_heartbeat FROM jobs WHERE state=?",
        (JobState.RUNNING.value,),
    ).fetchall():
        if pid is None or gone(pid, host, proc, beat, now):
            what = f"worker {describe(pid, host)} gone" if pid is not None else "worker gone"
            db.execute(
                "UPDATE jobs SET state=?, error=?, lease_pid=NULL, lease_proc=NULL, "
                "lease_host=NULL, lease_heartbeat=NULL, updated=? WHERE id=?",
                (JobState.INTERRUPTED.value, f"{what}; resumes from its checkpoint", now, job_id),
            )
            freed.append(job_id)
    return freed


def mark_interrupted(db: sqlite3.Connection, job_ids: list[int]) -> None:
    """For signal handlers: a last, quick write before the process exits."""
    db.executemany(
        "UPDATE jobs SET state=?, lease_pid=NULL, lease_proc=NULL, lease_host=NULL, "
        f"lease_heartbeat=NULL WHERE id=? AND state=? AND {HELD_BY_ME}",
        [(JobState.INTERRUPTED.value, i, JobState.RUNNING.value, *me()) for i in job_ids],
    )
