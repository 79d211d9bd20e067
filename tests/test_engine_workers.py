"""The engine with its models in worker processes (issue 16), end to end through `subq run`:
the subq process maps no model library, a worker killed mid-file costs one window, a file
that kills its worker twice fails and the batch goes on, Release leaves nothing behind,
and several workers run at once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import DATA, wait_for
from test_persistence import read_events, subq_run
from test_pipeline import srt_text, wer

MAPPED = ("libtorch", "libctranslate2", "libc10", "libcudart", "libcudnn")
LIBRARIES = ("torch", "ctranslate2", "whisper", "faster_whisper", "transformers")


def mapped_model_libraries(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted(
        {line.split()[-1] for line in maps.splitlines() if any(m in line for m in MAPPED)}
    )


def worker_pids(events: Path) -> list[int]:
    return [
        e["pid"]
        for e in read_events(events)
        if e["type"] == "worker" and e["state"] in ("idle", "busy") and e.get("pid")
    ]


def progress_of(events: Path, name: str) -> float:
    seen = read_events(events)
    ids = {e["job"] for e in seen if e["type"] == "job_state" and e["path"].endswith(name)}
    return max(
        (e["fraction"] for e in seen if e["type"] == "progress" and e["job_id"] in ids), default=0
    )


@pytest.fixture(scope="module")
def clean_story(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("clean-story")
    path = shutil.copy(DATA / "story.mp3", folder / "story.mp3")
    proc = subq_run(["--state", str(folder / "q.db"), str(path)], folder / "ev.jsonl")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return (folder / "story.srt").read_text(encoding="utf-8")


def test_the_subq_process_maps_no_model_library_while_a_batch_runs(clips, tmp_path):
    events = tmp_path / "ev.jsonl"
    args = ["--device", "cpu", "--state", str(tmp_path / "s.db"), str(clips["long.mp3"])]
    proc = subq_run(args, events)
    try:
        assert wait_for(lambda: 0.2 < progress_of(events, "long.mp3") < 1, 180)
        assert mapped_model_libraries(proc.pid) == []
        (worker,) = set(worker_pids(events))
        assert psutil.Process(worker).ppid() == proc.pid
        assert mapped_model_libraries(worker)  # the worker holds them
    finally:
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    # While the job runs, its worker is reported busy with it (the memory panel's row),
    # also when the job had to wait for the worker to start.
    seen = read_events(events)
    states = [e["state"] for e in seen if e["type"] == "job_state"]
    start, end = (
        next(i for i, e in enumerate(seen) if e["type"] == "job_state" and e["state"] == s)
        for s in ("running", "done")
    )
    during = [e for e in seen[start:end] if e["type"] == "worker" and e["pid"] == worker]
    assert during and all(e["state"] == "busy" and e["job_id"] for e in during), (states, during)


def test_kill_9_of_the_worker_mid_file_costs_one_window(tmp_path, clean_story):
    story = Path(shutil.copy(DATA / "story.mp3", tmp_path / "story.mp3"))
    events = tmp_path / "ev.jsonl"
    proc = subq_run(["--state", str(tmp_path / "s.db"), str(story)], events)
    assert wait_for(lambda: 0.35 < progress_of(events, "story.mp3") < 0.9, 240)
    victim = worker_pids(events)[-1]
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "died (signal 9) at " in out and "; resumed" in out, out
    notes = [e["note"] for e in read_events(events) if e["type"] == "worker" and e["note"]]
    assert any("resumed" in note for note in notes)
    assert story.with_suffix(".srt").read_text(encoding="utf-8") == clean_story


def test_a_file_that_kills_its_worker_twice_fails_and_the_batch_goes_on(clips, tmp_path):
    env = {**os.environ, "SUBQ_FAULTS": "transcribe:KILL:2"}  # once per run, not per worker
    paths = [str(clips["podcast.mp3"]), str(clips["talk.mp4"])]
    args = ["--device", "cpu", "--state", str(tmp_path / "s.db")]  # one worker: in turn
    proc = subq_run([*args, *paths], tmp_path / "ev.jsonl", env=env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0  # one file failed
    assert "killed its worker twice in a row" in out, out
    states = {
        Path(e["path"]).name: e["state"]
        for e in read_events(tmp_path / "ev.jsonl")
        if e["type"] == "job_state"
    }
    assert states == {"podcast.mp3": "failed", "talk.mp4": "done"}


RELEASE_SCRIPT = r"""
import json, sys, time, psutil
from subq.engine.runner import Engine
from subq.engine.settings import Settings
from subq.engine.events import WorkerChanged
me = psutil.Process()
engine = Engine(Settings(keep_alive=-1, device="cpu"), sys.argv[1], sample_memory=False)
workers = []
engine.subscribe(lambda e: isinstance(e, WorkerChanged) and e.pid and workers.append(e.pid))
engine.start()
time.sleep(0.5)
idle = me.memory_info().rss
engine.add([sys.argv[2]])
time.sleep(0.5)
engine.wait_idle(240)
# the media reader child (prober.py) holds no model and no GPU: not a worker
def workers_of():
    out = []
    for p in me.children(recursive=True):
        try:
            if "subq.engine.prober" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:  # it ended between the listing and the look: not a worker now
            pass
    return out
tree = [p.pid for p in workers_of()]
held = [p for p in tree if any("ctranslate2" in m.path for m in psutil.Process(p).memory_maps())]
busy = me.memory_info().rss
engine.release_gpu()
deadline = time.monotonic() + 30
while workers_of() and time.monotonic() < deadline:
    time.sleep(0.1)
after = me.memory_info().rss
left = [p.pid for p in workers_of()]
mods = [m for m in ("torch", "ctranslate2", "whisper", "transformers") if m in sys.modules]
print(json.dumps(dict(idle=idle, busy=busy, after=after, tree=tree, held=held, left=left,
                      mods=mods, workers=sorted(set(workers)))))
engine.shutdown()
"""


def test_release_ends_the_workers_and_the_engine_rss_returns_to_idle(clips, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", RELEASE_SCRIPT, str(tmp_path / "s.db"), str(clips["podcast.mp3"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["tree"] and seen["held"] == seen["tree"]  # the worker held the library
    assert seen["left"] == [] and seen["mods"] == []
    assert seen["after"] - seen["idle"] < 30 * 2**20, seen  # back near idle (no model here)


def test_two_cpu_workers_run_two_files_at_once_and_every_output_is_right(
    clips, tmp_path, references
):
    names = ("podcast.mp3", "talk.mp4", "lecture.mkv", "long.mp3")
    events = tmp_path / "ev.jsonl"
    args = ["--device", "cpu,cpu", "--state", str(tmp_path / "s.db")]
    proc = subq_run([*args, *(str(clips[n]) for n in names)], events)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    seen = read_events(events)
    busy = {e["device"] for e in seen if e["type"] == "worker" and e["state"] == "busy"}
    assert busy == {"cpu", "cpu#2"}
    pids = {e["pid"] for e in seen if e["type"] == "worker" and e["state"] == "busy"}
    assert len(pids) == 2
    running: set[int] = set()
    most = 0
    for e in seen:  # two jobs ran at the same time
        if e["type"] == "job_state":
            (running.add if e["state"] == "running" else running.discard)(e["job"])
            most = max(most, len(running))
    assert most == 2
    devices = {e["device"] for e in seen if e["type"] == "progress" and e.get("device")}
    assert devices == {"cpu", "cpu#2"}
    for name in names:
        text = srt_text(clips[name].with_suffix(".srt"))
        assert wer(references[name], text) <= 0.15, (name, text)


def visible_gpus() -> int:
    from subq.engine import memory

    return len(memory.visible_gpus(memory.Nvml()))


@pytest.mark.gpu
@pytest.mark.skipif(visible_gpus() < 1, reason="needs a GPU")
def test_release_leaves_no_subq_process_on_the_gpu(make_engine, clips):
    from subq.engine import memory
    from subq.engine.settings import Settings

    engine = make_engine(Settings(keep_alive=-1, device="cuda:0"))
    engine.start()
    engine.add([str(clips["podcast.mp3"])])
    assert engine.wait_idle(300)
    nvml = memory.Nvml()
    workers = engine.models.pool.pids()

    def listed() -> set[int]:
        return {p.pid for i in range(nvml.count()) for p in nvml.processes(i)}

    assert workers
    if not workers & listed():  # containers often hide pids from NVML: nothing to check
        pytest.skip("NVML lists no process ids here")
    engine.release_gpu()
    assert wait_for(lambda: not engine.models.pool.pids(), 60)
    assert wait_for(lambda: not (listed() & (workers | {os.getpid()})), 30)


@pytest.mark.gpu
@pytest.mark.skipif(visible_gpus() < 2, reason="needs two GPUs")
def test_two_workers_on_two_gpus(clips, tmp_path):
    events = tmp_path / "ev.jsonl"
    names = ("podcast.mp3", "talk.mp4", "lecture.mkv", "long.mp3")
    args = ["--device", "cuda:0,cuda:1", "--state", str(tmp_path / "s.db")]
    proc = subq_run([*args, *(str(clips[n]) for n in names)], events)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    busy = {
        e["device"] for e in read_events(events) if e["type"] == "worker" and e["state"] == "busy"
    }
    assert busy == {"cuda:0", "cuda:1"}
    assert all(clips[n].with_suffix(".srt").exists() for n in names)


def test_a_worker_is_started_for_each_file_that_can_run_not_more(clips, tmp_path):
    """Auto on the CPU runs two workers, but a one-file batch starts one: a job handed to a
    lane is not also counted as waiting for a worker of its own."""
    from subq.engine import memory

    def started(paths: list[Path], name: str) -> set[str]:
        events = tmp_path / f"{name}.jsonl"
        state = tmp_path / f"{name}.db"
        proc = subq_run(["--state", str(state), *map(str, paths)], events)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        seen = read_events(events)
        return {e["device"] for e in seen if e["type"] == "worker" and e["state"] == "starting"}

    assert started([clips["podcast.mp3"]], "one") == {"cpu"}
    two = started([clips["talk.mp4"], clips["lecture.mkv"]], "two")
    assert two == ({"cpu", "cpu#2"} if memory.CPU_WORKERS >= 2 else {"cpu"})
