"""Worker processes (issue 16): real processes, no mocks.

The engine's process never imports a model library while a worker transcribes; a worker's
death is reported with its signal; a worker never outlives its parent; Ctrl-C and SIGHUP do
not reach it; its output never reaches the terminal; a stop at a window gives a checkpoint
that a new worker resumes to exactly the segments of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from subq.engine import worker_protocol as p
from subq.engine.worker import WorkerProcess, describe_exit, wait_any
from subq.engine.worker_env import worker_env

HERE = Path(__file__).parent
DATA = HERE / "data"
HELPERS = str(HERE / "worker_helpers.py")
FW_TINY = p.Load("asr", "tiny.en", "cpu", "faster-whisper")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


def worker(**kw: object) -> WorkerProcess:
    w = WorkerProcess("cpu", threads=1, log=None, extra_env={"PYTHONPATH": str(HERE)}, **kw)
    w.wait_ready(timeout=60)
    return w


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet (PID 1 in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def helper(name: str, *args: str, **kw: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, HELPERS, name, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[arg-type]
    )


def test_messages_are_plain_and_loading_refuses_other_classes() -> None:
    for message in (p.Stop("j", "cancel"), p.Error("j", p.OOM, "out of memory"), p.GetStats()):
        assert p.loads(p.dumps(message)) == message
    with pytest.raises(pickle.UnpicklingError, match="not a worker message"):
        p.loads(pickle.dumps(ValueError("a library's exception")))
    assert p.plain({"a": (1, [2.5])}) == {"a": (1, [2.5])}
    numpy = pytest.importorskip("numpy")
    assert type(p.plain(numpy.float64(0.5))) is float  # a float subclass, yet not plain
    with pytest.raises(TypeError):
        p.plain(object())


def test_env_is_built_not_inherited_by_mutation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env, local = worker_env("cpu", 2)
    assert (env["OMP_NUM_THREADS"], env["SUBQ_CPU_THREADS"], local) == ("2", "2", "cpu")
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # a CPU worker never makes a CUDA context
    assert worker_env("cuda:1")[0]["CUDA_VISIBLE_DEVICES"] == "1"
    user = {"CUDA_VISIBLE_DEVICES": "2,3"}
    assert worker_env("cuda:1", base=user) == (
        {"CUDA_VISIBLE_DEVICES": "3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        "cuda:0",
    )
    assert worker_env("cuda:0", base=user, gpu_uuid="GPU-abc")[0]["CUDA_VISIBLE_DEVICES"] == (
        "GPU-abc"
    )
    assert "OMP_NUM_THREADS" not in os.environ or os.environ["OMP_NUM_THREADS"] != "2"
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(70) == "exit status 70"


def test_parent_imports_no_model_library_and_hears_no_worker_output(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    run = helper("imports", str(DATA / "podcast.mp3"), str(log))
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    seen = json.loads(out)
    assert seen["modules"] == seen["modules_after"] == []
    assert seen["mapped"] == []
    assert "libctranslate2" in seen["worker_mapped"]  # the check can see a mapped library
    assert "healthy dinner" in seen["text"]
    assert seen["shouted"] == "shouted" and seen["exit"] == "exit status 0"
    assert "WORKER-NOISE" not in out + err
    assert out.count("\n") == 1
    said = log.read_text()
    for how in ("WORKER-NOISE\n", "WORKER-NOISE fd1", "WORKER-NOISE fd2"):
        assert how in said


def test_sigkill_mid_call_is_reported_with_the_signal() -> None:
    w = worker()
    assert w.send(p.Call("j", "worker_helpers:spin", {"windows": 400}))
    seen = []
    deadline = time.monotonic() + 30
    while not any(isinstance(m, p.Checkpointed) for m in seen) and time.monotonic() < deadline:
        seen += [m for _, m in wait_any([w], 1.0)]
    os.kill(w.pid, signal.SIGKILL)
    while not any(isinstance(m, p.Exited) for m in seen) and time.monotonic() < deadline:
        seen += [m for _, m in wait_any([w], 1.0)]
    assert seen[-1] == p.Exited(-9, "signal 9 (SIGKILL)")
    assert not w.alive and not w.send(p.GetStats())
    assert w.stop() == seen[-1]


def test_a_worker_dies_with_its_parent() -> None:
    parent = helper("orphans")
    try:
        pids = json.loads(parent.stdout.readline())  # type: ignore[union-attr]
        assert not gone(pids["busy"]) and not gone(pids["idle"])
    finally:
        parent.kill()
        parent.communicate()
    assert wait_gone(pids["busy"], 10), "PR_SET_PDEATHSIG did not end the busy worker"
    assert wait_gone(pids["idle"], 10), "end-of-pipe did not end the idle worker"


def test_sigint_and_sighup_do_not_reach_the_worker() -> None:
    parent = helper("interrupted", stdin=subprocess.PIPE, start_new_session=True)
    try:
        pid = json.loads(parent.stdout.readline())["worker"]  # type: ignore[union-attr]
        os.killpg(parent.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
        os.killpg(parent.pid, signal.SIGHUP)
        os.kill(pid, signal.SIGINT)  # and even sent to the worker itself, it is ignored
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.3)
        out, err = parent.communicate("go\n", timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
    said = json.loads(out)
    assert sorted(said["caught"]) == sorted([signal.SIGINT, signal.SIGHUP]), err
    assert said["stats_pid"] == pid
    assert said["exit"] == "exit status 0"


def test_stop_or_kill_at_a_window_then_resume_in_a_new_worker() -> None:
    clip, options = str(DATA / "long.mp3"), {"language": "en"}
    first = worker()
    try:
        key = first.request(FW_TINY, timeout=60).key
        clean = first.request(p.Transcribe("clean", key, clip, options), timeout=60)
        assert isinstance(clean, p.Done) and len(clean.result["segments"]) > 3

        def stop_after_first_window(message: object) -> None:
            if isinstance(message, p.Checkpointed) and message.checkpoint["seek"] > 0:
                first.send(p.Stop("cut", "pause"))

        stopped = first.request(
            p.Transcribe("cut", key, clip, options), stop_after_first_window, timeout=60
        )
    finally:
        first.stop()
    assert isinstance(stopped, p.Stopped) and stopped.reason == "pause"
    checkpoint = stopped.checkpoint
    assert checkpoint is not None and checkpoint["seek"] > 0 and checkpoint["segments"]
    second = worker()
    try:
        key = second.request(FW_TINY, timeout=60).key
        resumed = second.request(p.Transcribe("cut", key, clip, options, checkpoint), timeout=60)
        assert isinstance(resumed, p.Done)
        assert resumed.result["segments"] == clean.result["segments"]

        # A worker killed mid-file costs one window: the last checkpoint resumes it exactly.
        last: list[dict] = []

        def kill_after_a_window(message: object) -> None:
            if isinstance(message, p.Checkpointed) and message.checkpoint["seek"] > 0 and not last:
                last.append(message.checkpoint)
                os.kill(second.pid, signal.SIGKILL)

        died = second.request(p.Transcribe("kill", key, clip, options), kill_after_a_window)
    finally:
        second.stop()
    assert died == p.Exited(-9, "signal 9 (SIGKILL)") and last
    with worker() as third:
        key = third.request(FW_TINY, timeout=60).key
        again = third.request(p.Transcribe("kill", key, clip, options, last[-1]), timeout=60)
    assert again.result["segments"] == clean.result["segments"]


def test_errors_cross_as_kind_and_message(tmp_path: Path) -> None:
    with worker() as w:
        missing = w.request(p.Transcribe("j", "asr:none@cpu", "x.mp3"), timeout=30)
        assert (missing.job, missing.kind) == ("j", p.BAD_REQUEST)
        key = w.request(p.Load("asr", str(tmp_path), "cpu", "faster-whisper"), timeout=60)
        assert isinstance(key, p.Error) and key.kind == p.MODEL
        stats = w.request(p.GetStats(), timeout=10)
        assert stats.pid == w.pid and stats.models == () and stats.gpu_bytes is None
        # Stop while a call runs: answered at its next safe point, with the last checkpoint
        w.send(p.Call("spin", "worker_helpers:spin", {"windows": 400}))
        w.send(p.GetStats())
        w.send(p.Stop("spin", "cancel"))
        replies = []
        while not replies or not isinstance(replies[-1], p.Stopped):
            replies += [m for _, m in wait_any([w], 10)]
        assert any(isinstance(m, p.Stats) for m in replies)
        assert replies[-1].reason == "cancel" and replies[-1].checkpoint["seek"] < 5
    assert w.exited == p.Exited(0, "exit status 0")


def test_stop_escalates_when_the_worker_does_not_quit() -> None:
    w = worker()
    w.send(p.Call("nap", "worker_helpers:nap", {"seconds": 60}))  # no safe point to quit at
    started = time.monotonic()
    assert w.stop(timeout=0.5) == p.Exited(-15, "signal 15 (SIGTERM)")
    assert time.monotonic() - started < 5


def test_translate_in_a_worker_matches_in_process_and_unload_gives_back(
    tiny_marian: Path, references: dict[str, str]
) -> None:
    from subq.engine.translate import load_translator

    lines = tuple(s.strip() + "." for s in references["story.mp3"].split(".")[:5])
    here = load_translator(str(tiny_marian), "cpu").translate(list(lines), "en", "de", 2)
    with worker() as w:
        loaded = w.request(p.Load("translate", str(tiny_marian), "cpu"), timeout=120)
        assert isinstance(loaded, p.Loaded) and loaded.bytes > 0
        progress: list[object] = []
        done = w.request(
            p.Translate("t", loaded.key, lines, "en", "de", 2), progress.append, timeout=60
        )
        assert done.result["lines"] == here
        assert [m.fraction for m in progress] == [0.4, 0.8, 1.0]  # type: ignore[attr-defined]
        unloaded = w.request(p.Unload(), timeout=30)
        assert unloaded.keys == (loaded.key,) and unloaded.rss > 0
        assert w.request(p.GetStats(), timeout=10).models == ()


def test_wait_any_serves_several_workers_and_one_death_spares_the_others() -> None:
    a, b = worker(), worker()
    try:
        for w in (a, b):
            assert w.send(p.Call(f"job-{w.pid}", "worker_helpers:spin", {"windows": 20}))
        final: dict[int, object] = {}
        senders: set[int] = set()
        deadline = time.monotonic() + 30
        while len(final) < 2 and time.monotonic() < deadline:
            for w, message in wait_any([a, b], 1.0):
                senders.add(w.pid)
                if isinstance(message, p.Checkpointed) and w is a and not a.exited:
                    os.kill(a.pid, signal.SIGKILL)
                if isinstance(message, p.Done | p.Exited):
                    final[w.pid] = message
        assert senders == {a.pid, b.pid}
        assert final[a.pid] == p.Exited(-9, "signal 9 (SIGKILL)")
        assert final[b.pid] == p.Done(f"job-{b.pid}", {"windows": 20})
    finally:
        a.stop()
        b.stop()
