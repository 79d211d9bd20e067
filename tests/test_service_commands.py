"""`subq run --detach`, `subq status` and `subq stop` (issue 26): the commands a script, or
a user back on the server, types. Real `subq` processes on a real engine service."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import DATA


def subq(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", *args, "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_detach_status_and_stop_as_a_user_types_them(state, tmp_path):
    story = Path(shutil.copy(DATA / "story.mp3", tmp_path / "story.mp3"))
    typo = tmp_path / "stroy.mp3"
    queued = subq(state, "run", "--detach", "--device", "cpu", str(story), str(typo))
    # the typo is said at once, not found later in the queue; the rest is queued
    assert queued.returncode == 1, queued
    assert f"subq: {typo}: no such file (not queued)" in queued.stderr
    assert "Queued 1 file(s) to the engine" in queued.stdout and str(story) in queued.stdout

    deadline, line, done = time.monotonic() + 90, "", 0
    while time.monotonic() < deadline:  # the table says how far the running file is
        shown = subq(state, "status")
        assert shown.returncode == 0, shown
        line = next((ln for ln in shown.stdout.splitlines() if "story.mp3" in ln), "")
        if "running" in line and "transcribe" in line and line.rstrip().endswith("%"):
            done = int(line.rstrip()[:-1].split()[-1])
            if done >= 20:  # a window or more: its checkpoint is where a stop resumes
                break
    assert "running" in line and "transcribe" in line and done >= 20, line
    as_json = json.loads(subq(state, "status", "--json").stdout)
    assert as_json["running"] and as_json["jobs"][0]["path"] == str(story)
    assert as_json["jobs"][0]["state"] in ("running", "done")

    stopped = subq(state, "stop")
    assert stopped.returncode == 0 and "the queue is kept" in stopped.stdout, stopped
    # no engine now: status says so (exit 1) and shows the queue the state file keeps
    kept = subq(state, "status")
    assert kept.returncode == 1 and "no engine runs" in kept.stdout, kept
    row = next(ln for ln in kept.stdout.splitlines() if "story.mp3" in ln)
    assert ("interrupted" in row and "resumes at" in row) or "done" in row, kept.stdout
    kept_json = json.loads(subq(state, "status", "--json").stdout)
    assert kept_json["running"] is False and kept_json["jobs"][0]["path"] == str(story)


def test_status_read_by_a_pipe_that_closes_early_ends_quietly(tmp_path):
    """`subq status | head -1`: the reader leaves after a line. Before, Python's
    BrokenPipeError traceback followed on the terminal."""
    from subq.engine import Settings
    from subq.engine.store import Store

    state = tmp_path / "q.db"
    store = Store(state)
    try:  # a kept queue longer than a pipe's buffer, so the writer meets the closed end
        rows = [
            (str(tmp_path / f"f{i:04}.mp3"), str(tmp_path / f"f{i:04}"), ()) for i in range(2000)
        ]
        store.add_jobs(rows, Settings())
    finally:
        store.close()
    shell = f"{sys.executable} -m subq.tui.cli status --state {state} | head -1"
    proc = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_status_json_says_a_file_subq_run_finished_is_done_to_the_end(tmp_path):
    """Progress lives in the engine; read back from the state file a done job said 0.0."""
    clip = tmp_path / "talk.mp4"
    shutil.copy(DATA / "talk.mp4", clip)
    state = tmp_path / "q.db"
    ran = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", str(clip), "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    (job,) = json.loads(subq(state, "status", "--json").stdout)["jobs"]
    assert (job["state"], job["progress"]) == ("done", 1.0)
