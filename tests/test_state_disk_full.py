"""The state file's disk fills mid-batch: one line, a non-zero exit, nothing done lost.

A real small filesystem (tmpfs, mounted for the test; root only) holds the state file and
is filled to the last block while the batch runs, so SQLite itself hits the full disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import wait_for
from test_persistence import read_events, subq_run


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    return filler


def test_full_disk_under_the_state_file_stops_in_one_line_and_resumes(clips, small_disk, tmp_path):
    media = [clips[name] for name in ("podcast.mp3", "talk.mp4", "lecture.mkv", "long.mp3")]
    state = small_disk / "queue.sqlite3"
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "XDG_STATE_HOME": str(small_disk / "logs")}
    proc = subq_run(["--state", str(state), *map(str, media)], events, env=env)
    assert wait_for(
        lambda: any(e["type"] == "job_state" and e["state"] == "done" for e in read_events(events)),
        180,
    )
    filler = fill(small_disk)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert f"cannot save the queue: disk full at {state}" in errors[0]
    claims = [w for w in out.split() if w.endswith("subq.log") or w.endswith("subq.log)")]
    for claim in claims:  # the log is where a message says it is
        assert Path(claim.rstrip(")")).exists()
    # Two CPU workers run two files at once, so the one that finished first is whichever
    # the events say, not necessarily the first named.
    finished = next(
        Path(e["path"])
        for e in read_events(events)
        if e["type"] == "job_state" and e["state"] == "done"
    )
    first_srt = finished.with_suffix(".srt")
    assert first_srt.exists()
    kept = first_srt.read_bytes()

    filler.unlink()
    shutil.rmtree(small_disk / "logs", ignore_errors=True)
    rerun = subq_run(["--state", str(state), *map(str, media)], tmp_path / "events2.jsonl")
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert first_srt.read_bytes() == kept  # finished work was not redone
    for path in media:
        assert path.with_suffix(".srt").exists()
