"""Two workers on one queue, one killed: the survivor frees and resumes its job at once."""

from __future__ import annotations

import shutil
import time

from conftest import wait_for
from subq.engine.jobs import JobState
from subq.engine.store import Store
from test_persistence import read_events, subq_run, transcribe_progress


def test_a_dead_workers_job_is_freed_at_once_and_taken_up_next(clips, tmp_path):
    media = tmp_path / "m"
    media.mkdir()
    files = []
    for i in range(3):  # one each for two runs, and one queued behind them
        files.append(media / f"L{i}.mp3")
        shutil.copy(clips["long.mp3"], files[-1])
    state = tmp_path / "q.db"
    args = ["--device", "cpu", "--state", str(state), *map(str, files)]  # a job at a time
    first = subq_run(args, tmp_path / "a.jsonl")
    assert wait_for(lambda: transcribe_progress(tmp_path / "a.jsonl", 0.05, files[0]), 120)
    second = subq_run(args, tmp_path / "b.jsonl")
    assert wait_for(lambda: transcribe_progress(tmp_path / "b.jsonl", 0.01, files[1]), 120)
    store = Store(state)
    try:
        held = {j.worker.split("@")[0]: j.path for j in store.jobs() if j.worker}
        dead_job, busy_job = held[str(first.pid)], held[str(second.pid)]
        first.kill()
        first.wait()
        killed = time.monotonic()
        job_id = next(j.id for j in store.jobs() if j.path == dead_job)
        assert wait_for(lambda: store.job(job_id).state != JobState.RUNNING, 30)
        freed_after = time.monotonic() - killed
    finally:
        store.close()
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    started = [
        e["path"]
        for e in read_events(tmp_path / "b.jsonl")
        if e["type"] == "job_state"
        and e["state"] == "running"
        and e.get("previous") not in (None, "running")
    ]
    # The dead worker's job is taken up right after the survivor's current one, in queue order.
    assert started.index(dead_job) == started.index(busy_job) + 1, started
    # within a beat or two of its heartbeat, not at its next window or after its own
    # queue (was 49 s)
    assert freed_after < 5, freed_after
    gone = [
        e
        for e in read_events(tmp_path / "b.jsonl")
        if e["type"] == "job_state" and e["path"] == dead_job and e["state"] == "interrupted"
    ]
    assert gone and "gone" in (gone[0].get("error") or ""), gone
    for path in files:
        assert path.with_suffix(".srt").exists()
