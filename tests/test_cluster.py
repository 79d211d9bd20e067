"""Workers as Ray actors on a real multi-node Ray cluster on this one machine (issue 29).

Ray's own test-cluster helper starts a head (no CPUs: nothing runs there) and two nodes,
each with one CPU and one `fake_gpu`, a custom resource standing in for a GPU
(SUBQ_CLUSTER_GPU_RESOURCE), so subq makes one worker per node as it would per GPU. The
nodes share this machine's disk: the shared storage. A node that cannot see a file is
made with the fault hook `node_read` in its environment (read by that node's processes
only), since every node here sees every file.

Every subtitle is compared with the same file's clean local run (`subq run` without
--cluster). Skipped without Ray (`pip install 'subq[ray]'`); `.ci/run` installs it and runs
this module after the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from conftest import DATA, wait_for  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from test_persistence import read_events, transcribe_progress  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]
FILES = ("talk.mp4", "podcast.mp3", "long.mp3")
STORE = {"object_store_memory": 80 * 2**20}
NODE = {"num_cpus": 1, "resources": {"fake_gpu": 1}, **STORE}


def run(state: Path, *args: str, events: Path | None = None, **popen) -> subprocess.Popen:
    """`subq run --state STATE ARGS` as a child (the user's command, Ray's driver)."""
    extra = ["--events", str(events)] if events else []
    popen = {"stdout": subprocess.PIPE, **popen}
    return subprocess.Popen(
        [sys.executable, "-m", "subq.tui.cli", "run", "--state", str(state), *extra, *args],
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def finish(proc: subprocess.Popen, timeout: float = 400) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


@pytest.fixture(scope="module")
def cluster():
    """A head and two worker nodes; both nodes hide any file named `hidden*`, and the first
    one files named `half*` too (node_read: a node without the mount, in part)."""
    saved = os.environ.get("SUBQ_FAULTS")
    try:
        c = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20},
        )
        for hidden in ("hidden,node_read:ENOENT::half", "hidden"):
            os.environ["SUBQ_FAULTS"] = f"node_read:ENOENT::{hidden}"  # that node's only
            c.add_node(**NODE)
        c.wait_for_nodes()
    finally:
        if saved is None:
            os.environ.pop("SUBQ_FAULTS", None)
        else:
            os.environ["SUBQ_FAULTS"] = saved
    yield c
    c.shutdown()


@pytest.fixture(autouse=True)
def stand_in_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBQ_CLUSTER_GPU_RESOURCE", "fake_gpu")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each file's SRT from a clean local run (no cluster)."""
    folder = tmp_path_factory.mktemp("clean")
    names = (*FILES, "story.mp3")
    for name in names:
        shutil.copy(DATA / name, folder / name)
    proc = run(folder / "s.db", *(str(folder / n) for n in names))
    out = finish(proc)
    assert proc.returncode == 0, out
    return {n: (folder / n).with_suffix(".srt").read_text() for n in names}


def media(tmp_path: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        source = DATA / ("podcast.mp3" if name.startswith(("hidden", "half")) else name)
        shutil.copy(source, tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def live_actors() -> list[dict]:
    return [a for a in ray._private.state.actors().values() if a["State"] != "DEAD"]


def test_a_batch_spreads_over_both_nodes_and_each_file_equals_its_local_run(
    cluster, clean, tmp_path
):
    paths = media(tmp_path, *FILES, "hidden.mp3")
    events = tmp_path / "events.jsonl"
    proc = run(tmp_path / "s.db", "--cluster", cluster.address, *map(str, paths), events=events)
    out = finish(proc)
    assert proc.returncode == 1, out  # hidden.mp3 failed; the others are done
    for name in FILES:
        srt = (tmp_path / name).with_suffix(".srt")
        assert srt.exists() and srt.read_text() == clean[name], out
    busy = {e["device"] for e in read_events(events) if e["type"] == "worker" and e["job_id"]}
    assert len(busy) == 2 and all(d.endswith("/fake_gpu0") for d in busy), busy
    unseen = [line for line in out.splitlines() if "not on shared storage?" in line]
    assert unseen, out
    assert f"cannot read {tmp_path / 'hidden.mp3'}: not on shared storage?" in unseen[0]
    # both nodes were asked before it failed: the first handed it on, the second could not
    assert "another node will try it" in unseen[0] and "(nor could 1 other node(s))" in out
    assert "Traceback" not in out
    assert not (tmp_path / "hidden.srt").exists()


def test_a_file_one_node_cannot_read_is_done_by_the_other(cluster, clean, tmp_path):
    """Some clusters mount the media on some nodes only. Two files, two free workers: the
    first node is handed one it cannot read, says so, and the other node does both."""
    paths = media(tmp_path, "half-1.mp3", "half-2.mp3")
    proc = run(tmp_path / "s.db", "--cluster", cluster.address, *map(str, paths))
    out = finish(proc)
    assert proc.returncode == 0, out
    for path in paths:
        assert path.with_suffix(".srt").read_text() == clean["podcast.mp3"], out
    handed_on = [line for line in out.splitlines() if "another node will try it" in line]
    # once: the node that said no is not handed the file again (it would say no again)
    assert len(handed_on) == 1 and "half-" in handed_on[0] and "cannot read" in handed_on[0], out
    assert "Traceback" not in out


def test_files_one_node_refuses_fail_in_one_line_once_the_other_node_leaves(tmp_path):
    """Node A cannot read either file; node B takes one and leaves mid-file. A must not wait
    for ever on the one it handed on (it did, once every other node was gone): each file
    ends failed in one line and the run ends."""
    own = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **STORE})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SUBQ_FAULTS", "node_read:ENOENT::half")  # node A's only
        own.add_node(**NODE)
    leaving = own.add_node(**NODE)
    own.wait_for_nodes()
    paths = [Path(shutil.copy(DATA / "story.mp3", tmp_path / f"half-{i}.mp3")) for i in (1, 2)]
    events = tmp_path / "events.jsonl"
    proc = run(tmp_path / "s.db", "--cluster", own.address, *map(str, paths), events=events)
    try:
        assert wait_for(lambda: any(transcribe_progress(events, 0.1, p) for p in paths), 240)
        own.remove_node(leaving, allow_graceful=False)
        out = finish(proc, 300)
    finally:
        if proc.poll() is None:
            proc.kill()
        own.shutdown()
    assert proc.returncode == 1, out
    assert "another node will try it" in out, out
    failed = [line for line in out.splitlines() if line.startswith("error:")]
    for path in paths:
        assert any(f"cannot read {path}" in line for line in failed), out
        assert not path.with_suffix(".srt").exists()
    assert "Traceback" not in out


def test_a_node_removed_mid_file_resumes_on_the_other_node_with_identical_output(
    cluster, clean, tmp_path
):
    spare = cluster.add_node(**NODE)  # the cluster keeps two nodes after this test
    cluster.wait_for_nodes()
    (story,) = media(tmp_path, "story.mp3")
    events = tmp_path / "events.jsonl"
    proc = run(tmp_path / "s.db", "--cluster", cluster.address, str(story), events=events)
    try:
        assert wait_for(lambda: transcribe_progress(events, 0.3, story), 240), "no progress"
        entry = next(
            e["device"]
            for e in reversed(read_events(events))
            if e["type"] == "worker" and e["state"] == "busy"
        )
        node_id = entry.split("/")[0].rsplit("-", 1)[1]
        (node,) = [n for n in cluster.list_all_nodes() if n.node_id.startswith(node_id)]
        cluster.remove_node(node, allow_graceful=False)
        out = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "resumed" in out, out
    assert story.with_suffix(".srt").read_text() == clean["story.mp3"]
    if node is not spare:
        cluster.add_node(**NODE)


def test_a_hung_worker_actor_is_replaced_and_its_file_comes_out_as_the_clean_run(
    cluster, clean, tmp_path
):
    (long,) = media(tmp_path, "long.mp3")
    hang = {**os.environ, "SUBQ_FAULTS": "transcribe:HANG:1"}
    address = cluster.address
    proc = run(
        tmp_path / "s.db", "--cluster", address, "--worker-timeout", "4", str(long), env=hang
    )
    out = finish(proc)
    assert proc.returncode == 0, out
    assert "hung (no answer for 4 s)" in out and "resumed" in out, out
    assert long.with_suffix(".srt").read_text() == clean["long.mp3"]


def test_release_ends_every_actor_and_its_worker(cluster, clean, tmp_path, make_engine):
    from subq.engine.jobs import JobState
    from subq.engine.settings import Settings

    paths = media(tmp_path, "talk.mp4", "podcast.mp3")
    engine = make_engine(Settings(keep_alive=-1, cluster=cluster.address))
    engine.start()
    engine.add([str(p) for p in paths])
    assert wait_for(
        lambda: all(j.state is JobState.DONE for j in engine.jobs()) and len(engine.jobs()) == 2,
        240,
    ), [(j.name, j.state, j.error) for j in engine.jobs()]
    workers = {e.device: e.pid for e in engine.events if type(e).__name__ == "WorkerChanged"}
    assert len(workers) == 2 and live_actors(), workers
    engine.release_gpu()
    assert wait_for(lambda: not live_actors(), 60), live_actors()
    for pid in workers.values():  # the nodes are this machine: their workers are gone too
        assert wait_for(lambda pid=pid: not _alive(pid), 30), pid
    for path in paths:
        assert path.with_suffix(".srt").read_text() == clean[path.name]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_without_ray_cluster_is_one_line_that_says_what_to_install(tmp_path):
    blocker = tmp_path / "noray"  # shadows the installed Ray as an uninstalled one fails
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('No module named ray')\n")
    (podcast,) = media(tmp_path, "podcast.mp3")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    proc = run(tmp_path / "s.db", "--cluster", "local", str(podcast), env=env)
    out = finish(proc, 60)
    assert proc.returncode != 0
    assert out.strip().splitlines()[-1].endswith("--cluster needs Ray: pip install 'subq[ray]'")
    assert "Traceback" not in out and not podcast.with_suffix(".srt").exists()


def test_a_cluster_that_goes_away_stops_the_batch_in_one_line_and_a_rerun_resumes(clean, tmp_path):
    own = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    own.add_node(**NODE)
    own.wait_for_nodes()
    (story,) = media(tmp_path, "story.mp3")
    events, state = tmp_path / "events.jsonl", tmp_path / "s.db"
    log = tmp_path / "out.txt"
    with log.open("w") as sink:  # a file, not a pipe: the command's own end is measured
        proc = run(state, "--cluster", own.address, str(story), events=events, stdout=sink)
    try:
        assert wait_for(lambda: transcribe_progress(events, 0.3, story), 240), "no progress"
        own.shutdown()
        gone_at = time.monotonic()
        proc.wait(300)
        stopped_in = time.monotonic() - gone_at
        out = log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out
    gone = [line for line in out.splitlines() if "is gone" in line]
    assert len(gone) == 1 and "Traceback" not in out, out
    # not Ray's minute-long wait on a lost head (measured here: 1-20 s, once 33 s)
    assert stopped_in < 45, f"{stopped_in:.0f} s to stop"
    rerun = run(state, str(story))  # here, without the cluster: the kept windows are reused
    out = finish(rerun)
    assert rerun.returncode == 0 and "story.mp3: resuming at" in out, out
    assert story.with_suffix(".srt").read_text() == clean["story.mp3"]


def test_the_app_shows_a_row_per_actor_and_release_ends_them_all(
    cluster, clean, tmp_path, make_engine
):
    """The real app over an engine whose workers are the cluster's actors, at 120x40: each
    actor has its row in the memory panel (node, models, its own RSS read on its node), and
    R (Release) ends every actor, each row saying its worker is gone."""
    from subq.engine.jobs import JobState
    from subq.engine.settings import Settings
    from subq.tui.app import SubqApp
    from test_tui import async_test, wait_until
    from test_tui_workers import panel

    paths = media(tmp_path, "talk.mp4", "long.mp3")
    engine = make_engine(Settings(keep_alive=-1, cluster=cluster.address), sample_memory=False)
    engine.start()
    app = SubqApp(engine, start_paths=[str(p) for p in paths])

    @async_test
    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(
                pilot,
                lambda: (
                    all(j.state is JobState.DONE for j in engine.jobs())
                    and len(engine.jobs()) == 2
                    and panel(app).count("fake_gpu0 idle") == 2
                ),
                240,
                "both files done, two idle actors",
            )
            rows = [line for line in panel(app).splitlines() if "fake_gpu0" in line]
            assert len(rows) == 2 and all("MB" in row for row in rows), panel(app)
            assert live_actors()
            await pilot.press("R")
            await wait_until(pilot, lambda: panel(app).count("no worker") == 2, 60, "released")
            assert wait_for(lambda: not live_actors(), 30), live_actors()

    drive()
    for path in paths:
        assert path.with_suffix(".srt").read_text() == clean[path.name]


def test_a_pause_reaches_the_actors_running_call_within_a_window_and_resume_is_exact(
    cluster, clean, tmp_path, make_engine
):
    """Stop over the cluster: a pause mid-file ends the actor's call at its next window (the
    file waits with its checkpoint, its worker idle), and the resumed file's subtitles are
    the clean local run's."""
    from subq.engine.events import StageProgressed
    from subq.engine.jobs import JobState
    from subq.engine.settings import Settings

    (story,) = media(tmp_path, "story.mp3")
    engine = make_engine(Settings(keep_alive=-1, cluster=cluster.address))
    engine.start()
    engine.add([str(story)])

    def fraction() -> float:
        seen = [e.fraction for e in engine.events if isinstance(e, StageProgressed)]
        return max(seen, default=0.0)

    assert wait_for(lambda: fraction() >= 0.2, 240), "no progress"
    asked = time.monotonic()
    engine.pause()
    (job,) = engine.jobs()
    assert wait_for(lambda: engine.job(job.id).state is JobState.PAUSED, 60)
    stopped_in = time.monotonic() - asked
    held = engine.job(job.id)
    assert 0 < held.resume_from < 186, held
    assert stopped_in < 20, f"the pause took {stopped_in:.1f} s"  # a window is ~2 s here
    engine.resume()
    assert wait_for(lambda: engine.job(job.id).state is JobState.DONE, 240)
    assert story.with_suffix(".srt").read_text() == clean["story.mp3"]


def test_cluster_local_starts_a_throwaway_ray_for_trying_it(clean, tmp_path):
    (podcast,) = media(tmp_path, "podcast.mp3")
    proc = run(tmp_path / "s.db", "--cluster", "local", str(podcast))
    out = finish(proc, 300)
    assert proc.returncode == 0, out
    assert "cluster local: workers on " in out and "/cpu" in out, out
    assert "no GPU" not in out and "Token authentication" not in out, out  # not ours to say
    assert podcast.with_suffix(".srt").read_text() == clean["podcast.mp3"]
