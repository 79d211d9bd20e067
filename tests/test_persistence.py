"""A queue that survives anything: kill -9, signals, two workers, old and broken state files."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLIPS, DATA, wait_for
from subq.engine.jobs import JobState
from subq.engine.settings import Settings
from subq.engine.store import StateError, Store
from subq.engine.store_schema import APPLICATION_ID, SCHEMA_VERSION


def subq_run(args: list[str], events: Path, **popen: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "subq.tui.cli", "run", "--events", str(events), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written as we read
            out.append(json.loads(line))
    return out


def transcribe_progress(events: Path, minimum: float, path: Path) -> bool:
    """True once the job for `path` has transcribed at least `minimum` of its audio."""
    seen = read_events(events)
    ids = {e["job"] for e in seen if e["type"] == "job_state" and e["path"] == str(path)}
    return any(
        e["type"] == "progress"
        and e["stage"] == "transcribe"
        and e["job_id"] in ids
        and minimum <= e["fraction"] < 1
        for e in seen
    )


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".subq-")]


@pytest.fixture(scope="module")
def clean_srt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each clip's subtitles from one uninterrupted `subq run`, to compare resumed runs with."""
    folder = tmp_path_factory.mktemp("clean")
    names = ("long.mp3", "podcast.mp3", "talk.mp4")
    paths = [shutil.copy(DATA / name, folder / name) for name in names]
    proc = subq_run(["--state", str(folder / "q.db"), *map(str, paths)], folder / "ev.jsonl")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return {n: (folder / n).with_suffix(".srt").read_text(encoding="utf-8") for n in names}


def test_kill_9_mid_batch_then_rerun_resumes_without_redoing(clips, tmp_path, clean_srt):
    state = tmp_path / "state.sqlite3"
    paths = [str(clips["podcast.mp3"]), str(clips["long.mp3"]), str(clips["talk.mp4"])]
    events = tmp_path / "ev1.jsonl"
    proc = subq_run(["--state", str(state), *paths], events)

    def done() -> list[Path]:
        return [
            Path(e["path"])
            for e in read_events(events)
            if e["type"] == "job_state" and e["state"] == "done"
        ]

    assert wait_for(lambda: bool(done()), 180)
    assert wait_for(lambda: transcribe_progress(events, 0.45, clips["long.mp3"]), 180)
    proc.kill()
    proc.wait()
    # which short file is done first depends on the workers (two on two cores, longest
    # first: long.mp3 and talk.mp4, then podcast.mp3) and on the machine's speed
    finished = {path: path.with_suffix(".srt").stat().st_mtime_ns for path in done()}
    assert clips["long.mp3"] not in finished
    assert not clips["long.mp3"].with_suffix(".srt").exists()
    assert leftovers(clips["long.mp3"].parent) == []

    events2 = tmp_path / "ev2.jsonl"
    rerun = subq_run(["--state", str(state), *paths], events2)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "resuming at" in out  # mid-file, from the stored window checkpoint
    for path, mtime in finished.items():  # done stays done: not run, not written again
        assert path.with_suffix(".srt").stat().st_mtime_ns == mtime
    started = [
        e["path"]
        for e in read_events(events2)
        if e["type"] == "job_state" and e["state"] == "running" and e["previous"] != "running"
    ]
    assert not {str(path) for path in finished} & set(started)
    for p in paths:  # a file stopped and resumed comes out exactly as a clean run's
        assert Path(p).with_suffix(".srt").read_text(encoding="utf-8") == clean_srt[Path(p).name]
    assert leftovers(clips["long.mp3"].parent) == []


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_signal_mid_transcription_checkpoints_and_resumes(clips, tmp_path, clean_srt, signum):
    state = tmp_path / "state.sqlite3"
    events = tmp_path / "ev.jsonl"
    proc = subq_run(["--state", str(state), str(clips["long.mp3"])], events)
    assert wait_for(lambda: transcribe_progress(events, 0.3, clips["long.mp3"]), 180)
    sent = time.monotonic()
    proc.send_signal(signum)
    if signum == signal.SIGINT:
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # the second Ctrl-C stops at once
    proc.wait(timeout=10)
    assert time.monotonic() - sent < 2.5
    assert proc.returncode != 0
    row = sqlite3.connect(state).execute("SELECT state, resume_from FROM jobs").fetchone()
    assert row[0] == JobState.INTERRUPTED.value
    assert row[1] > 20  # the finished windows are kept
    assert leftovers(clips["long.mp3"].parent) == []

    rerun = subq_run(["--state", str(state), str(clips["long.mp3"])], tmp_path / "ev2.jsonl")
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "resuming at" in out
    resumed = clips["long.mp3"].with_suffix(".srt").read_text(encoding="utf-8")
    assert resumed == clean_srt["long.mp3"]  # cue for cue, as if it had never stopped


def test_two_workers_share_one_queue(clips, tmp_path):
    state = tmp_path / "state.sqlite3"
    paths = [str(clips[name]) for name in (*CLIPS, "long.mp3")]
    a = subq_run(["--state", str(state), "--device", "cpu", *paths], tmp_path / "a.jsonl")
    time.sleep(0.5)
    b = subq_run(["--state", str(state), "--device", "cpu", *paths], tmp_path / "b.jsonl")
    out_a, _ = a.communicate(timeout=400)
    out_b, _ = b.communicate(timeout=400)
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b

    def ran(events: Path) -> set[str]:
        return {
            e["path"]
            for e in read_events(events)
            if e["type"] == "job_state" and e["state"] == "done" and e["previous"] == "running"
        }

    ran_a, ran_b = ran(tmp_path / "a.jsonl"), ran(tmp_path / "b.jsonl")
    assert ran_a | ran_b == set(paths)
    assert not ran_a & ran_b  # no job ran twice
    assert ran_a and ran_b  # both did work
    db = sqlite3.connect(state)
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == len(paths)
    assert {r[0] for r in db.execute("SELECT state FROM jobs")} == {"done"}


def test_subq_run_runs_only_its_files(clips, tmp_path):
    state = tmp_path / "state.sqlite3"
    store = Store(state)
    store.add_job(str(clips["talk.mp4"]), Settings())  # a saved job of someone else's
    store.close()
    proc = subq_run(["--state", str(state), str(clips["podcast.mp3"])], tmp_path / "e.jsonl")
    out, _ = proc.communicate(timeout=200)
    assert proc.returncode == 0, out
    assert not clips["talk.mp4"].with_suffix(".srt").exists()
    store = Store(state)
    assert [j.state for j in store.jobs()] == [JobState.QUEUED, JobState.DONE]


def test_previous_schema_version_is_migrated(tmp_path):
    from subq.engine.store_schema import MIGRATIONS

    path = tmp_path / "v1.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[1])
    db.execute(
        "INSERT INTO jobs (path, position, state, settings, created, updated) VALUES "
        "(?, 1, 'done', ?, 0, 0)",
        ("/old/talk.mp4", Settings().to_json()),
    )
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    store = Store(path)
    jobs = store.jobs()
    assert [(j.path, j.state) for j in jobs] == [("/old/talk.mp4", JobState.DONE)]
    assert store.claim(jobs[0].id) is None  # v2 lease columns exist
    version = store._db.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_a_v7_job_reads_with_no_findings_and_keeps_the_ones_it_gets(tmp_path):
    """Schema 8 adds what a finished run found (flags, measures, removals): rows stored
    before it read as finding nothing; a saved job's findings come back whole."""
    from subq.engine.jobs import Removal
    from subq.engine.store_schema import MIGRATIONS

    path = tmp_path / "v7.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(";".join(MIGRATIONS[n] for n in range(1, 8)))
    db.execute(
        "INSERT INTO jobs (path, position, state, settings, created, updated) VALUES "
        "(?, 1, 'done', ?, 0, 0)",
        ("/old/talk.mp4", Settings().to_json()),
    )
    db.execute("PRAGMA user_version=7")
    db.commit()
    db.close()
    store = Store(path)
    (job,) = store.jobs()
    assert (job.flags, job.measures, job.removed) == ((), (), ())
    found = dataclasses.replace(
        job,
        flags=("repetitive",),
        measures=(("compression_ratio", 3.04),),
        removed=(Removal("repeat", 2.68, 10.14, "It all happens inside their leaves.", 3),),
    )
    store.save(found, holder=False)
    assert dataclasses.replace(store.job(job.id), updated=0.0) == found
    store.close()


def test_a_v2_text_prompt_checkpoint_is_dropped_with_a_log_line_and_the_file_restarts(
    make_engine, clips, tmp_path
):
    from subq.engine.store_schema import MIGRATIONS

    path = tmp_path / "v2.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[1] + ";" + MIGRATIONS[2])
    old = {"seek": 30.0, "prompt": "every morning I wake up", "segments": [[0, 2, "Hi", 0, 0]]}
    db.execute(
        "INSERT INTO jobs (path, position, state, settings, checkpoint, resume_from, created, "
        "updated) VALUES (?, 1, 'interrupted', ?, ?, 30, 0, 0)",
        (str(clips["talk.mp4"]), Settings().to_json(), json.dumps({"key": "k", "checkpoint": old})),
    )
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    engine = make_engine(Settings(keep_alive=-1), state=path, paused=True)
    engine.start()
    assert wait_for(lambda: any(type(e).__name__ == "LogEmitted" for e in engine.events), 10)
    logs = [e.message for e in engine.events if type(e).__name__ == "LogEmitted"]
    assert any("checkpoint from an older subq dropped; the file restarts" in m for m in logs)
    job = engine.jobs()[0]
    assert job.resume_from == 0 and engine.store.saved_checkpoint(job.id) == (None, None)


def test_a_damaged_state_file_is_moved_aside_and_a_new_queue_starts(tmp_path):
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    for i in range(200):
        store.add_job(f"/x/{i}.mp4", Settings())
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    store = Store(path)
    if store.moved_aside is None:
        pytest.skip("sqlite read the truncated file without noticing; nothing to recover")
    assert store.moved_aside.exists() and ".corrupt-" in store.moved_aside.name
    assert store.jobs() == []


def test_a_damaged_state_file_another_live_process_holds_is_left_alone(tmp_path):
    """A damage seen here may be this process's view (a network mount, a full disk): the
    file is set aside only when no other live process has the queue open."""
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    for i in range(200):
        store.add_job(f"/x/{i}.mp4", Settings())
    store.close()
    holder = subprocess.Popen(  # another process with the queue open
        [sys.executable, "-c", "import sys,time; from subq.engine.store import Store; "
         "s = Store(sys.argv[1]); print('open', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        try:
            Store(path).close()
        except StateError as exc:
            assert "open in another subq process" in str(exc)
        else:
            pytest.skip("sqlite read the truncated file without noticing; nothing to recover")
        assert path.stat().st_size == len(data) // 2
        assert not list(tmp_path.glob("*.corrupt-*"))
    finally:
        holder.kill()
        holder.wait()
    store = Store(path)  # nobody holds it now: set aside, and a new queue starts
    assert store.moved_aside is not None and store.jobs() == []


@pytest.mark.parametrize(
    "content, why",
    [
        (b"my notes, not a queue\n" * 50, "not an SQLite database"),
        ("other-app", "another program's SQLite database"),
        ("plain-sqlite", "without subq's tables"),
    ],
)
def test_a_file_that_is_not_a_subq_state_file_is_refused_untouched(tmp_path, content, why):
    path = tmp_path / "notes.db"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE recipes (name)")
        if content == "other-app":
            db.execute("PRAGMA application_id=42")
        db.commit()
        db.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match=why):
        Store(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.db"
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "--state", str(path), "x.mp3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "not a subq state file" in proc.stderr


def test_state_from_a_newer_subq_is_refused_untouched(tmp_path):
    path = tmp_path / "state.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE future (x)")
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")  # a newer subq's file says so
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match="newer subq"):
        Store(path)
    assert path.read_bytes() == before
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "--state", str(path), "x.mp4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "newer subq" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_stale_lease_of_a_dead_process_is_recovered(tmp_path):
    state = tmp_path / "state.sqlite3"
    store = Store(state)
    job = store.add_job("/x/a.mp4", Settings())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    store._db.execute(
        "UPDATE jobs SET state='running', lease_pid=?, lease_host=?, lease_heartbeat=? WHERE id=?",
        (child.pid, __import__("socket").gethostname(), time.time(), job.id),
    )
    assert store.recover_stale() == [job.id]
    assert store.job(job.id).state == JobState.INTERRUPTED
    os.environ.get("X")
