"""The state file's schema: its versions, the migrations between them, and opening it.

The version lives in `PRAGMA user_version`. Older files are migrated in one transaction,
newer ones refused untouched (before even the WAL flag is written), and a corrupt file is
moved aside so a new queue can start.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

SCHEMA_VERSION = 8
APPLICATION_ID = 0x73756271  # "subq" in the file's header: a state file says whose it is
SQLITE_MAGIC = b"SQLite format 3\x00"

_V1 = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    position REAL NOT NULL,
    state TEXT NOT NULL,
    stage TEXT,
    error TEXT,
    settings TEXT NOT NULL,
    duration REAL,
    outputs TEXT NOT NULL DEFAULT '[]',
    stage_times TEXT NOT NULL DEFAULT '[]',
    input_sig TEXT,
    done_key TEXT,
    transcript TEXT,
    transcript_key TEXT,
    language TEXT,
    translations TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX jobs_path ON jobs(path);
"""

_V2 = """
ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
ALTER TABLE jobs ADD COLUMN resume_from REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN notes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN output_base TEXT;
ALTER TABLE jobs ADD COLUMN lease_pid INTEGER;
ALTER TABLE jobs ADD COLUMN lease_host TEXT;
ALTER TABLE jobs ADD COLUMN lease_started REAL;
ALTER TABLE jobs ADD COLUMN lease_heartbeat REAL;
CREATE TABLE history (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    at REAL NOT NULL,
    worker TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
"""

# v3: a job is done only while the outputs it wrote are there unchanged (their sums), and
# stored work is tied to the input's content. Checkpoints of v2 kept the decoder's prompt as
# text, which changes what a resumed window decodes; they cannot be resumed identically, so
# they are dropped (the engine logs each file that restarts). Stored transcripts are dropped
# too: their keys hold no content fingerprint, so no new key could ever match them.
_V3 = """
ALTER TABLE jobs ADD COLUMN output_sums TEXT;
UPDATE jobs SET transcript_key = NULL, transcript = NULL, translations = '{}';
UPDATE jobs SET checkpoint = NULL, resume_from = 0 WHERE checkpoint IS NOT NULL
"""

# v4: a checkpoint's segments live one row each, so a window's checkpoint writes only the
# segments it added: the bytes a long file writes grow with its length, not its square
# (issue 22). jobs.checkpoint keeps the rest of it and how many segments it has; a v3
# checkpoint (segments inside the JSON) is still read as it is.
_V4 = """
CREATE TABLE checkpoint_segments (
    job_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    segment TEXT NOT NULL,
    PRIMARY KEY (job_id, n)
) WITHOUT ROWID
"""

# v5 (issue 23): a lease names a process that can be checked (leases.py: boot id, pid
# namespace and start time in lease_proc); a job remembers the process that queued it, so a
# settings change reaches only its own batch; orders for a job another process runs wait
# in `orders` for its holder (or whoever runs it next); `written` remembers every subtitle
# subq wrote and its sum, beyond its job's life, so a file that is not subq's as it wrote
# it is the user's and kept; the header says the file is subq's.
_V5 = """
ALTER TABLE jobs ADD COLUMN lease_proc TEXT;
ALTER TABLE jobs ADD COLUMN added_pid INTEGER;
ALTER TABLE jobs ADD COLUMN added_proc TEXT;
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    settings TEXT,
    output_base TEXT,
    at REAL NOT NULL,
    by_pid INTEGER NOT NULL,
    by_proc TEXT
);
CREATE INDEX orders_job ON orders(job_id);
CREATE TABLE written (
    path TEXT PRIMARY KEY,
    sum TEXT NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
INSERT OR REPLACE INTO written (path, sum, at)
    SELECT key, value, updated FROM jobs, json_each(jobs.output_sums)
    WHERE jobs.output_sums IS NOT NULL;
PRAGMA application_id=1937072753
"""

# v6 (issue 24): how sure the model was of the language it detected, shown with it
_V6 = """
ALTER TABLE jobs ADD COLUMN language_probability REAL
"""

# v7 (issue 28): a job whose place the user set (a move) keeps it; the others of one add
# may start longest first when several workers share the batch
_V7 = """
ALTER TABLE jobs ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0
"""

# v8 (issue 27): what a job's last finished run found: its quality flags, the values they
# were judged from and the junk taken out of its subtitles (findings.py), as one JSON object
_V8 = """
ALTER TABLE jobs ADD COLUMN findings TEXT
"""

MIGRATIONS = {
    1: _V1,
    2: _V2,
    3: _V3,
    4: _V4,
    5: _V5,
    6: _V6,
    7: _V7,
    8: _V8,
}  # version N is reached by running MIGRATIONS[N]


class StateError(Exception):
    """The state file cannot be used as is; str() is the one-line message."""


def open_db(
    path: Path, in_use: Callable[[], bool]
) -> tuple[sqlite3.Connection, Path | None, list[str]]:
    """The connection, where a corrupt file was moved aside (or None), and what the
    migration has to say (checkpoints it dropped), for the engine to log once it runs.

    A file that is not subq's is refused and left untouched (`--state` pointed at the
    wrong file must not cost the user that file). A corrupt subq file is moved aside only
    when `in_use()` says no other live process has it open: theirs may be a passing fault
    of this process's view (a full disk, a network mount), not of the file."""
    refuse_foreign(path)
    notes: list[str] = []
    try:
        db = _connect(path)
        notes += _migrate(db)
        return db, None, notes
    except sqlite3.DatabaseError as exc:
        reason = str(exc)
        corrupt = not isinstance(exc, sqlite3.OperationalError) or any(
            word in reason for word in ("malformed", "not a database", "quick_check")
        )
        if not corrupt:
            raise StateError(f"{path}: cannot open the state file: {reason}") from None
        if in_use():
            raise StateError(
                f"{path}: state file is damaged ({reason}) and open in another subq "
                "process; stop that process first, or use --state with another file"
            ) from None
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        os.replace(path, aside)
        db = _connect(path)
        return db, aside, _migrate(db)


def refuse_foreign(path: Path) -> None:
    """StateError unless `path` is missing, empty, or a subq state file (even a damaged
    one: its header says so)."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(f"{path}: cannot read the state file: {exc.strerror}") from None
    if not head:
        return
    why = None if head.startswith(SQLITE_MAGIC) else "it is not an SQLite database"
    if why is None:
        why = _foreign_tables(path)
    if why:
        raise StateError(
            f"{path}: not a subq state file ({why}); left as it is: give --state another file"
        )


def _foreign_tables(path: Path) -> str | None:
    """Why an SQLite file is not subq's, or None. Read through a read-only connection, as
    the header in the main file may be older than the WAL beside it (after a kill -9)."""
    try:
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)
        try:
            app = ro.execute("PRAGMA application_id").fetchone()[0]
            version = ro.execute("PRAGMA user_version").fetchone()[0]
            names = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            ro.close()
    except sqlite3.DatabaseError:
        return None  # damaged: the open finds that and says so
    if app == APPLICATION_ID:
        return None
    if app != 0:
        return "it is another program's SQLite database"
    if (version > 0 and "jobs" not in names) or (version == 0 and names):
        return "it is an SQLite database without subq's tables"
    return None


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=15, check_same_thread=False, isolation_level=None)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:  # refuse before writing anything, even the WAL flag
        db.close()
        raise StateError(
            f"{path}: state file is from a newer subq (schema {version}, this subq "
            f"knows {SCHEMA_VERSION}); upgrade subq or use --state with another file"
        )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=15000")
    if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
        db.close()
        raise sqlite3.DatabaseError("quick_check failed")
    return db


def _migrate(db: sqlite3.Connection) -> list[str]:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return []
    notes: list[str] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if 2 <= version < 3:
            dropped = db.execute(
                "SELECT path FROM jobs WHERE checkpoint IS NOT NULL ORDER BY id"
            ).fetchall()
            notes += [
                f"{row[0]}: checkpoint from an older subq dropped; the file restarts"
                for row in dropped
            ]
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for stmt in filter(None, (s.strip() for s in MIGRATIONS[target].split(";"))):
                db.execute(stmt)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return notes
