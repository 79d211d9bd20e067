"""Worker calls that never cross, hang or blame the wrong file (issue 22), on real workers.

Each request is a numbered call; a reply for another call, an unreadable frame, a call
that hears nothing for its limit and a Stop the worker does not answer all end the worker
instead of leaving the channel out of step; a worker that dies before it takes a call is
not blamed for it; two threads on one worker take turns.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
from subq.engine import worker_protocol as p
from subq.engine.models import Loaded, ModelManager, NeedsMemory, RemoteModel, WorkerDied
from subq.engine.pool import DeviceChoice
from subq.engine.worker import STOP_GRACE, CallHung, WorkerProcess

HERE = Path(__file__).parent


def worker(faults: str = "") -> WorkerProcess:
    env = {"PYTHONPATH": str(HERE)}
    if faults:
        env["SUBQ_FAULTS"] = faults
    w = WorkerProcess("cpu", threads=1, log=None, extra_env=env)
    w.wait_ready(timeout=60)
    return w


def spin(job: str, windows: int, seconds: float = 0.02) -> p.Call:
    return p.Call(job, "worker_helpers:spin", {"windows": windows, "seconds": seconds})


def test_two_threads_on_one_worker_take_turns_and_each_gets_its_own_reply() -> None:
    """Before: the second thread's request went out while the first call ran, and each
    thread took whichever Done came first (one file's result under another's name)."""
    w = worker()
    got: dict[str, object] = {}

    def ask(job: str, windows: int) -> None:
        seen: list[str] = []
        reply = w.request(spin(job, windows), lambda m: seen.append(m.job))
        got[job] = (reply.job, reply.result["windows"], set(seen))

    first = threading.Thread(target=ask, args=("job30", 30))
    second = threading.Thread(target=ask, args=("job3", 3))
    first.start()
    time.sleep(0.1)  # the second asks while the first call runs (the old code crossed 2 in 3)
    second.start()
    for t in (first, second):
        t.join(60)
    assert got == {"job30": ("job30", 30, {"job30"}), "job3": ("job3", 3, {"job3"})}
    w.stop()


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("GARBLE", "killed: it sent a message that cannot be read"),
        ("MISMATCH", "killed: it sent a reply for call 1001, not 1"),
    ],
)
def test_a_reply_that_cannot_be_trusted_ends_the_worker(fault: str, why: str) -> None:
    """Before: an unreadable frame became a final Error while the worker went on with the
    call, and the next request read that call's checkpoints and Done as its own."""
    w = worker(f"reply:{fault}:1")
    reply = w.request(spin("j", 20))
    assert isinstance(reply, p.Exited) and reply.how.startswith(why), reply
    assert not w.alive


def test_a_call_that_hears_nothing_is_hung_and_its_worker_is_killed() -> None:
    w = worker()
    started = time.monotonic()
    with pytest.raises(CallHung, match=r"hung \(no answer for 2 s\)"):
        w.request(p.Call("j", "worker_helpers:nap", {"seconds": 60}), timeout=2)
    assert 2 <= time.monotonic() - started < 6
    assert not w.alive


def test_a_stop_the_worker_cannot_hear_ends_it_within_the_grace() -> None:
    """A call stuck where no Stop is read (a native call): a pause must not wait for it."""
    w = worker()
    threading.Timer(0.5, lambda: w.send(p.Stop("j", "pause"))).start()
    started = time.monotonic()
    reply = w.request(p.Call("j", "worker_helpers:nap", {"seconds": 60}))
    assert isinstance(reply, p.Exited) and "did not stop within" in reply.how
    assert time.monotonic() - started < STOP_GRACE + 3


def test_a_stop_during_a_load_is_not_for_the_load() -> None:
    """A Stop names a job; a Load has none, so the grace does not start and the Load ends."""
    w = worker()
    threading.Timer(0.2, lambda: w.send(p.Stop("j", "pause"))).start()
    reply = w.request(p.Call("", "worker_helpers:nap", {"seconds": STOP_GRACE + 1}))
    assert isinstance(reply, p.Done) and reply.result == "rested"
    w.stop()


def test_a_worker_that_dies_between_calls_is_not_blamed_for_the_next() -> None:
    w = worker("idle:KILL:1")
    assert isinstance(w.request(spin("first", 2)), p.Done)
    deadline = time.monotonic() + 10
    while w.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not w.alive  # seen before anyone asks it anything (no zombie counted alive)
    reply = w.request(spin("second", 2))
    assert isinstance(reply, p.Exited) and reply.accepted is False


def test_making_room_unloads_only_on_the_device_that_needs_it(monkeypatch) -> None:
    """Before: making room on one device unloaded the other device's model first (ending
    that lane's worker mid-call) and freed nothing where the room was needed."""
    monkeypatch.setenv("SUBQ_FAKE_FREE_BYTES", "0")
    manager = ModelManager(lambda _event: None)
    for entry in ("cpu", "cpu#2"):  # tables only: these models have no worker to call
        handle = RemoteModel(entry, f"translate:opus@{entry}")
        manager._models[("translation", "opus", entry)] = Loaded(
            "translation", "opus", entry, handle, 300 << 20, 0.0
        )
    from subq.engine.models import make_room

    with pytest.raises(NeedsMemory):
        make_room(manager, "whisper", "cpu#2", 200 << 20)
    assert [m.device for m in manager.loaded()] == ["cpu"]


class TwoGpus:
    """NVML as the device choice reads it, with two GPUs whose free memory we set: the
    hardware stood in for, not the choice under test."""

    ok = True

    def __init__(self) -> None:
        self.free = [8 << 30, 4 << 30]

    def count(self) -> int:
        return 2

    def free_bytes(self, index: int) -> int:
        return self.free[index]

    def uuid(self, index: int) -> str:
        return f"GPU-{index}"


def test_auto_decides_once_and_keeps_its_gpu_while_a_worker_runs(monkeypatch) -> None:
    """Before: the engine chose again on every loop, so a batch whose model filled cuda:0
    moved to cuda:1, loading the model and a CUDA context there too."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml, choice = TwoGpus(), DeviceChoice()
    assert choice.devices("auto", nvml, workers_running=False) == (["cuda:0"], True)
    nvml.free = [1 << 30, 4 << 30]  # our own model now fills cuda:0
    assert choice.devices("auto", nvml, workers_running=True) == (["cuda:0"], False)
    # once every worker has ended (Release, keep-alive), the next start decides again
    assert choice.devices("auto", nvml, workers_running=False) == (["cuda:1"], True)
    assert choice.devices("cpu,cpu", nvml, workers_running=True) == (["cpu", "cpu"], True)


def test_a_checkpoint_writes_only_the_segments_it_added(tmp_path) -> None:
    """Before: every window's checkpoint re-sent and re-stored every segment so far, so
    what a long file wrote grew with the square of its length. Now the worker sends the
    new segments only and the store adds one row each; reading it back gives them all."""
    from subq.engine.settings import Settings
    from subq.engine.store import Store

    store = Store(tmp_path / "s.db")
    job = store.add_job(str(tmp_path / "a.mp3"), Settings())
    assert store.claim(job.id) is None  # only the job's holder writes its checkpoints
    segments: list[list] = []
    changes = []
    for window in range(240):  # two hours of 30 s windows, ~4 segments each
        segments += [[window * 30.0 + i, window * 30.0 + i + 5, f"words {window}.{i}", 0.1, -0.2]
                     for i in range(4)]  # fmt: skip
        checkpoint = {"seek": window * 30.0, "frame": window * 3000, "segments": list(segments)}
        before = store._db.total_changes
        store.set_checkpoint(job.id, "key", checkpoint)
        changes.append(store._db.total_changes - before)
    assert set(changes) == {5}  # 4 new segment rows and the job's row, at 2 min and at 2 h
    key, back = store.saved_checkpoint(job.id)
    assert key == "key" and back["segments"] == segments and back["seek"] == 239 * 30.0
    row = store._db.execute("SELECT length(checkpoint) FROM jobs WHERE id=?", (job.id,))
    assert row.fetchone()[0] < 200  # the job's row holds no segments
    store.set_checkpoint(job.id, "key", {"seek": 1.0, "segments": [[0.0, 1.0, "other", 0, 0]]})
    assert store.saved_checkpoint(job.id)[1]["segments"] == [[0.0, 1.0, "other", 0, 0]]
    store.set_checkpoint(job.id, "", None)
    assert store.saved_checkpoint(job.id) == (None, None)
    assert store._db.execute("SELECT count(*) FROM checkpoint_segments").fetchone()[0] == 0


def test_stats_asked_outside_any_call_never_end_a_call() -> None:
    """A GetStats sent straight down the channel (not as a call) is answered at the next
    window with the asker's number, not the running call's: the call still ends with Done."""
    w = worker()
    asked: list[bool] = []

    def ask(_message: object) -> None:
        if not asked:
            asked.append(w.send(p.GetStats()))

    reply = w.request(spin("j", 10), ask)
    assert asked == [True] and isinstance(reply, p.Done) and reply.result == {"windows": 10}
    assert w.alive
    w.stop()


@pytest.mark.parametrize("reaped_first", [False, True])
def test_a_model_whose_worker_died_after_its_load_is_loaded_again_not_failed(
    monkeypatch, reaped_first: bool
) -> None:
    """The worker dies just after a job's model load, before the job's transcribe call.
    Before: the pool started a fresh worker without a word and the call reached it, which
    failed an innocent file with "no asr model … loaded in this worker" (1 run in 8). Now
    the call is refused as a death before the job's call (requeued, never blamed), the death
    is said once, and the next load starts a worker that really holds the model."""
    monkeypatch.setenv("SUBQ_FAULTS", "idle:KILL:1")
    events: list[object] = []
    manager = ModelManager(events.append)
    try:
        model = manager.whisper("tiny.en", "cpu", backend="faster-whisper")
        first_pid = model.pid
        deadline = time.monotonic() + 10
        while manager.pool.alive("cpu") and time.monotonic() < deadline:
            time.sleep(0.05)
        if reaped_first:  # the engine thread noticed the death first (its every loop)
            manager.reap_idle()
        request = p.Transcribe("job1", model.key, str(HERE / "data" / "podcast.mp3"))
        with pytest.raises(WorkerDied) as died:
            manager.call("cpu", request)
        assert died.value.blamed is False
        deaths = [e for e in events if getattr(e, "state", "") == "died"]
        assert [e.pid for e in deaths] == [first_pid]  # said once, on the worker that died
        again = manager.whisper("tiny.en", "cpu", backend="faster-whisper")
        assert again.pid != first_pid and manager.pool.alive("cpu")
        reply = manager.call("cpu", dataclasses.replace(request, model=again.key))
        assert isinstance(reply, p.Done) and reply.result["segments"]
    finally:
        manager.pool.close()
