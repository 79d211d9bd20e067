"""One queue, many writers: only a job's holder writes it, orders from other processes
reach the holder, and a lease names a process that can be checked (issue 23).

Real `subq run` processes on one real state file; the second writer is either another
`subq run`, an in-process engine (what the app runs), or the test itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, wait_for
from subq.engine import leases
from subq.engine.jobs import JobState
from subq.engine.settings import Settings
from subq.engine.store import Store
from test_persistence import read_events, subq_run, transcribe_progress


def _job_of(store: Store, path) -> object:
    return next(j for j in store.jobs() if j.path == str(path))


def test_a_cancel_from_another_process_stops_the_job_where_it_runs(clips, tmp_path, make_engine):
    state = tmp_path / "q.db"
    # story.mp3 (3 min): long.mp3 (70 s) could finish on an idle machine before the second
    # engine is up and the order reaches the runner's heartbeat, which is not what is tested
    long = Path(shutil.copy(DATA / "story.mp3", clips["long.mp3"].parent / "story.mp3"))
    runner = subq_run(["--device", "cpu", "--state", str(state), str(long)], tmp_path / "a.jsonl")
    assert wait_for(lambda: transcribe_progress(tmp_path / "a.jsonl", 0.02, long), 120)
    app = make_engine(Settings(keep_alive=-1), state=state, paused=True)  # the app's engine
    app.start()
    assert wait_for(lambda: any(j.path == str(long) for j in app.jobs()), 10)
    job_id = next(j.id for j in app.jobs() if j.path == str(long))
    asked = time.monotonic()
    app.cancel(job_id)
    out, _ = runner.communicate(timeout=120)
    ended = [e for e in read_events(tmp_path / "a.jsonl") if e["type"] == "job_state"]
    assert ended[-1]["state"] == "cancelled", out  # not "done": the cancel was not lost
    assert time.monotonic() - asked < 20, out
    assert app.store.job(job_id).state == JobState.CANCELLED
    assert not long.with_suffix(".srt").exists()
    assert app.store.pending_orders() == []  # carried out, once


def test_a_file_given_again_with_a_language_while_another_process_runs_it(
    clips, tmp_path, tiny_marian
):
    """`subq run` B asks for talk.de.srt while A transcribes talk: B waits for A's
    transcript, the German subtitles are written, and both exit 0 (B truthfully)."""
    state = tmp_path / "q.db"
    long = clips["long.mp3"]
    base = ["--device", "cpu", "--state", str(state), "--translation-model", str(tiny_marian)]
    first = subq_run([*base, str(long)], tmp_path / "a.jsonl")
    assert wait_for(lambda: transcribe_progress(tmp_path / "a.jsonl", 0.02, long), 120)
    second = subq_run([*base, "--translate-to", "de", str(long)], tmp_path / "b.jsonl")
    out_b, _ = second.communicate(timeout=300)
    out_a, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out_a
    assert second.returncode == 0, out_b
    assert "running in process" in out_b, out_b
    assert long.with_suffix(".srt").exists() and long.with_suffix(".de.srt").exists()
    store = Store(state)
    try:
        assert _job_of(store, long).state == JobState.DONE
        assert store.pending_orders() == []
    finally:
        store.close()


def test_a_process_that_lost_its_lease_writes_nothing_more(clips, tmp_path):
    """The job is taken over (here by the test, a live process that can be checked): its
    old runner stops at its next window and never writes over the new holder's row."""
    state = tmp_path / "q.db"
    long = clips["long.mp3"]
    runner = subq_run(["--device", "cpu", "--state", str(state), str(long)], tmp_path / "a.jsonl")
    assert wait_for(lambda: transcribe_progress(tmp_path / "a.jsonl", 0.02, long), 120)
    store = Store(state)
    try:
        job = _job_of(store, long)
        with store.transaction() as db:
            db.execute(
                "UPDATE jobs SET lease_pid=?, lease_proc=?, lease_host=?, lease_heartbeat=? "
                "WHERE id=?",
                (*leases.me(), leases.HOST, time.time(), job.id),
            )
        _, taken_at = store.saved_checkpoint(job.id)
        said = lambda: [  # noqa: E731
            e for e in read_events(tmp_path / "a.jsonl")
            if e["type"] == "log" and "lease was taken" in e["message"]
        ]  # fmt: skip
        assert wait_for(said, 60)
        assert "stopped without writing" in said()[-1]["message"]
        time.sleep(3.0)  # it follows the job now; it must not write it
        row = store.job(job.id)
        assert row.state == JobState.RUNNING and row.worker == store.worker
        _, after = store.saved_checkpoint(job.id)
        assert (after or {}).get("seek") == (taken_at or {}).get("seek")  # no later window
        assert runner.poll() is None  # it waits for the new holder, as a second run would
    finally:
        runner.kill()
        runner.wait()
        store.close()
    assert not long.with_suffix(".srt").exists()


def test_a_stopped_holder_keeps_its_job(clips, tmp_path, monkeypatch):
    """Ctrl-Z is not death: a holder we can check keeps its job however long it is silent."""
    state = tmp_path / "q.db"
    long = clips["long.mp3"]
    runner = subq_run(["--device", "cpu", "--state", str(state), str(long)], tmp_path / "a.jsonl")
    assert wait_for(lambda: transcribe_progress(tmp_path / "a.jsonl", 0.02, long), 120)
    monkeypatch.setattr(leases, "LEASE_TIMEOUT", 0.5)
    store = Store(state)
    try:
        os.kill(runner.pid, signal.SIGTSTP)  # Ctrl-Z
        assert wait_for(lambda: _stopped(runner.pid), 10)
        time.sleep(2.0)  # four times the (shortened) heartbeat limit
        assert store.recover_stale() == []
        assert _job_of(store, long).state == JobState.RUNNING
        os.kill(runner.pid, signal.SIGCONT)
        out, _ = runner.communicate(timeout=180)
        assert runner.returncode == 0, out
        assert _job_of(store, long).state == JobState.DONE
    finally:
        with_suppressed_kill(runner)
        store.close()


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def with_suppressed_kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_a_lease_names_a_process_not_a_pid(tmp_path):
    """Pid reuse, another pid namespace, an older subq's lease: each judged as it must be."""
    store = Store(tmp_path / "q.db")
    try:
        ids = [store.add_job(f"/x/{i}.mp3", Settings()).id for i in range(4)]
        pid, proc = leases.me()
        machine, _, started = proc.rpartition("/")
        now = time.time()
        rows = [  # (pid, proc, host, heartbeat)
            (pid, f"{machine}/{int(started) + 1}", leases.HOST, now),  # our pid, reused
            (999_999, f"{machine.split('/')[0]}/pid:[1]/5", leases.HOST, now),  # a container
            (999_998, f"{machine.split('/')[0]}/pid:[1]/5", leases.HOST, now - 3600),
            (999_997, None, leases.HOST, now),  # an older subq's lease, its pid dead
        ]
        with store.transaction() as db:
            for job_id, (p, pr, host, beat) in zip(ids, rows, strict=True):
                db.execute(
                    "UPDATE jobs SET state='running', lease_pid=?, lease_proc=?, lease_host=?, "
                    "lease_heartbeat=? WHERE id=?",
                    (p, pr, host, beat, job_id),
                )
        assert sorted(store.recover_stale()) == [ids[0], ids[2], ids[3]]
        assert store.job(ids[1]).state == JobState.RUNNING  # fresh beat, pid not ours to see
    finally:
        store.close()


HOLD = """
import sys, time
from subq.engine.settings import Settings
from subq.engine.store import Store
s = Store(sys.argv[1])
s.add_job(sys.argv[2], Settings(formats=("srt",)))
print("added", flush=True)
time.sleep(120)
"""


def test_settings_reach_only_the_batch_they_were_made_for(tmp_path, make_engine):
    state = tmp_path / "q.db"
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state), "/x/theirs.mp3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline().strip() == "added"
        app = make_engine(Settings(keep_alive=-1), state=state, paused=True)
        app.start()
        app.add(["/x/mine.mp3"])  # not media: it never runs while paused anyway
        assert wait_for(lambda: len(app.jobs()) == 2, 10)
        app.update_settings(Settings(keep_alive=-1, formats=("vtt",)))
        formats = lambda: {j.path: j.settings.formats for j in app.store.jobs()}  # noqa: E731
        assert wait_for(lambda: formats()["/x/mine.mp3"] == ("vtt",), 10)
        time.sleep(0.5)
        assert formats()["/x/theirs.mp3"] == ("srt",)  # a live `subq run`'s own options
        other.kill()
        other.wait()
        app.update_settings(Settings(keep_alive=-1, formats=("srt", "vtt")))
        assert wait_for(lambda: formats()["/x/theirs.mp3"] == ("srt", "vtt"), 10)  # abandoned
    finally:
        with_suppressed_kill(other)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_transcripts_are_private_and_subtitles_follow_the_umask(clips, tmp_path, mask):
    home = tmp_path / "home"
    env = dict(os.environ, XDG_DATA_HOME=str(home / "data"), XDG_STATE_HOME=str(home / "st"))
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "--device", "cpu", str(clips["podcast.mp3"])],
        env=env, capture_output=True, text=True, timeout=300,
        preexec_fn=lambda: os.umask(mask),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = home / "data" / "subq"
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(folder) == 0o700
    for name in ("queue.sqlite3", "queue.sqlite3-wal", "queue.sqlite3-shm", "queue.sqlite3.lock"):
        if (folder / name).exists():
            assert mode(folder / name) == 0o600, name
    assert mode(home / "st" / "subq" / "subq.log") == 0o600
    assert mode(clips["podcast.mp3"].with_suffix(".srt")) == 0o666 & ~mask
    readable = _as_another_user(folder / "queue.sqlite3")
    assert readable is False
    assert _as_another_user(clips["podcast.mp3"].with_suffix(".srt")) is (mask == 0o022)


def _as_another_user(path) -> bool:
    """Can another account (nobody) read `path`? A forked child drops to its uid and tries."""
    if os.getuid() != 0:
        pytest.skip("dropping to another uid needs root")
    for folder in reversed(path.parents[:-1]):  # let it walk the test's folders
        if folder.stat().st_uid == 0 and folder.name not in ("subq",):
            os.chmod(folder, folder.stat().st_mode | 0o011)
    child = os.fork()
    if child == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            with open(path, "rb") as f:
                f.read(1)
            os._exit(0)
        except PermissionError:
            os._exit(1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, 1)
    return code == 0
