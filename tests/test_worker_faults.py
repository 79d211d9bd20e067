"""`subq run` through a worker that hangs, garbles its channel, answers for another call or
dies between calls (issue 22): the batch ends with exit 0 and each file's subtitles equal
its clean run's, every fault said in one line, and a death between calls blamed on no file.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import DATA
from test_persistence import read_events, subq_run


def run(folder: Path, names: tuple[str, ...], *extra: str, faults: str = "") -> tuple[str, float]:
    env = {**os.environ, "SUBQ_FAULTS": faults} if faults else None
    paths = [str(shutil.copy(DATA / name, folder / name)) for name in names]
    args = ["--device", "cpu", "--state", str(folder / "s.db"), *extra, *paths]
    started = time.monotonic()
    proc = subq_run(args, folder / "ev.jsonl", env=env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return out, time.monotonic() - started


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], float]:
    folder = tmp_path_factory.mktemp("clean")
    _, seconds = run(folder, ("long.mp3", "podcast.mp3"))
    return {n: (folder / n).with_suffix(".srt").read_text() for n in ("long", "podcast")}, seconds


@pytest.mark.parametrize(
    ("faults", "said"),
    [
        ("transcribe:HANG:1", "worker on cpu hung (no answer for 3 s) at 0:00; resumed"),
        ("reply:GARBLE:1", "worker on cpu killed: it sent a message that cannot be read"),
        ("reply:MISMATCH:1", "worker on cpu killed: it sent a reply for call 1002, not 2"),
    ],
)
def test_a_broken_worker_costs_one_window_and_the_output_is_the_clean_runs(
    tmp_path, clean, faults, said
):
    srts, clean_seconds = clean
    out, seconds = run(tmp_path, ("long.mp3",), "--worker-timeout", "3", faults=faults)
    assert said in out, out
    assert (tmp_path / "long.srt").read_text() == srts["long"]
    assert seconds < clean_seconds + 3 + 20  # the hang limit, a new worker, one window again


def test_a_worker_that_dies_between_calls_is_blamed_on_no_file(tmp_path, clean):
    """The worker dies after each of its first two calls (the model loads): each time the
    next call finds it gone before taking it. Before, two such deaths failed an innocent
    file as 'killed its worker twice in a row'."""
    srts, _ = clean
    out, _ = run(tmp_path, ("long.mp3", "podcast.mp3"), faults="idle:KILL:2")
    assert "killed its worker twice" not in out, out
    assert "before it took the job; requeued" in out or "died while idle" in out, out
    for name in ("long", "podcast"):
        assert (tmp_path / f"{name}.srt").read_text() == srts[name]
    deaths = [e for e in read_events(tmp_path / "ev.jsonl") if e.get("state") == "died"]
    assert len(deaths) >= 2


def test_one_worker_paused_or_released_alone_while_the_other_goes_on(make_engine, clips, tmp_path):
    """A worker order (the memory panel's p and R on a worker's row): the paused worker's
    job goes back to the queue with its checkpoint and finishes on the other worker; the
    paused one takes no job; released, its process ends while the other keeps its model."""
    from conftest import wait_for
    from subq.engine.events import StageProgressed, WorkerChanged
    from subq.engine.jobs import JobState
    from subq.engine.settings import Settings

    story = shutil.copy(DATA / "story.mp3", tmp_path / "story.mp3")
    engine = make_engine(Settings(keep_alive=-1, device="cpu,cpu"))
    engine.start()
    engine.add([story, str(clips["long.mp3"])])

    def on(device: str) -> set[int]:
        return {
            e.job_id
            for e in engine.events
            if isinstance(e, StageProgressed) and e.device == device and e.fraction > 0.1
        }

    def all_done(count: int) -> bool:
        jobs = engine.jobs()
        return len(jobs) == count and all(j.state == JobState.DONE for j in jobs)

    assert wait_for(lambda: on("cpu") and on("cpu#2"), 120)
    moved = next(iter(on("cpu")))
    engine.worker_order("cpu", "release")
    assert wait_for(lambda: engine.models.pool.slot("cpu").worker is None, 60)
    assert wait_for(lambda: all_done(2), 300)
    later = [e for e in engine.events if isinstance(e, StageProgressed) and e.job_id == moved]
    assert later[-1].device == "cpu#2"  # it finished on the other worker, resumed there
    said = [e.note for e in engine.events if isinstance(e, WorkerChanged) and e.device == "cpu"]
    assert any("released" in n for n in said), said
    assert engine.models.pool.slot("cpu").worker is None  # it took no job while held
    engine.worker_order("cpu", "resume")
    engine.add([str(clips["podcast.mp3"]), str(clips["talk.mp4"])])
    assert wait_for(lambda: all_done(4), 120)
