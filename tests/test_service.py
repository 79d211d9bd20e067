"""The batch outlives the SSH session (issue 26): the engine as a per-user service.

Real service processes (`python -m subq.engine.service`, started by `attach_engine` in a
session of their own), real sockets, real clients: the app's client in this process and
other processes that connect, get killed, or pretend to be another user or version.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DATA, wait_for
from subq.engine.client import EngineUnavailable, attach_engine, connect_engine
from subq.engine.jobs import JobState
from subq.engine.service_socket import socket_path
from subq.engine.settings import Settings
from test_tui import async_test


def clean_run_srt(media: Path, tmp_path: Path) -> str:
    """The subtitles a plain `subq run` of `media` writes, on a queue of its own."""
    clean = tmp_path / "clean"
    clean.mkdir()
    subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "--device", "cpu", "--state",
         str(clean / "s.db"), "--output-dir", str(clean), str(media)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return (clean / media.with_suffix(".srt").name).read_text()


def kill_service(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def events_of(client) -> list:
    seen: list = []
    client.subscribe(seen.append)
    client.start()
    return seen


def job_trace(events: list) -> list[tuple]:
    return [
        (
            type(e).__name__,
            getattr(getattr(e, "job", None), "id", None),
            str(getattr(e, "state", "")),
        )
        for e in events
        if type(e).__name__ in ("JobChanged", "JobRemoved", "QueueReordered", "EngineStateChanged")
    ]


def test_three_apps_attached_see_the_same_events_and_the_orders_work(state, tmp_path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    files = [shutil.copy(DATA / n, media / n) for n in ("talk.mp4", "podcast.mp3")]
    first = attach_engine(state, Settings(keep_alive=-1), paused=True)
    clients = [first, connect_engine(state), connect_engine(state)]
    traces = [events_of(c) for c in clients]
    assert {c.pid for c in clients} == {first.pid}  # one engine for the state file
    first.add(files)
    assert wait_for(lambda: all(len(c.jobs()) == 2 for c in clients), 20)
    clients[1].move(clients[1].jobs()[1].id, "top")  # an order from another app
    assert wait_for(lambda: [j.name for j in clients[2].jobs()] == ["podcast.mp3", "talk.mp4"], 20)
    clients[2].resume()
    assert first.wait_idle(120)
    done = [("podcast.mp3", JobState.DONE), ("talk.mp4", JobState.DONE)]
    # each app's view catches up by its own stream (the idle answer came on the first's)
    assert wait_for(lambda: all([(j.name, j.state) for j in c.jobs()] == done for c in clients))
    assert wait_for(lambda: job_trace(traces[0]) == job_trace(traces[1]) == job_trace(traces[2]))
    assert len(job_trace(traces[0])) >= 6
    assert Path(files[0]).with_suffix(".srt").is_file()
    # a late app gets the queue as it is now, with no event before it
    late = connect_engine(state, watch=False)
    assert [(j.name, j.state) for j in late.jobs()] == [(j.name, j.state) for j in first.jobs()]


def client_process(state: Path, paths: list[str]) -> subprocess.Popen:
    """An app in another process: attaches, queues `paths`, then waits to be killed."""
    code = (
        "import sys, time; from pathlib import Path\n"
        "from subq.engine.client import attach_engine\n"
        "from subq.engine.settings import Settings\n"
        "c = attach_engine(Path(sys.argv[1]), Settings(keep_alive=-1, device='cpu'))\n"
        "c.start(); c.add(sys.argv[2:]); print('queued', flush=True); time.sleep(600)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(state), *paths], stdout=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["SIGHUP", "SIGKILL"])
def test_the_app_killed_mid_file_the_file_still_finishes(state, tmp_path, sig) -> None:
    long = Path(shutil.copy(DATA / "long.mp3", tmp_path / "long.mp3"))
    app = client_process(state, [str(long)])
    assert app.stdout.readline().strip() == "queued"
    watcher = connect_engine(state)
    events_of(watcher)
    assert wait_for(lambda: any(j.state == JobState.RUNNING for j in watcher.jobs()), 60)
    app.send_signal(sig)  # the SSH session dropped, or the app was killed
    app.wait(10)
    assert watcher.wait_idle(120)
    assert [j.state for j in watcher.jobs()] == [JobState.DONE]
    assert long.with_suffix(".srt").read_text() == clean_run_srt(long, tmp_path)


def test_an_engine_killed_mid_file_is_replaced_and_resumes_it(state, tmp_path) -> None:
    story = Path(shutil.copy(DATA / "story.mp3", tmp_path / "story.mp3"))
    first = attach_engine(state, Settings(keep_alive=-1, device="cpu"))
    seen = events_of(first)
    first.add([str(story)])
    progress = lambda: max((getattr(e, "fraction", 0) for e in seen), default=0)  # noqa: E731
    assert wait_for(lambda: progress() > 0.4, 120)  # windows done, checkpoints stored
    kill_service(first.pid)
    assert socket_path(state).exists()  # what a crash leaves: a stale socket, replaced below
    again = attach_engine(state, Settings(keep_alive=-1, device="cpu"))
    events_of(again)
    assert again.pid != first.pid
    assert again.wait_idle(180)
    job = again.jobs()[0]
    assert job.state == JobState.DONE, job.error
    assert story.with_suffix(".srt").read_text() == clean_run_srt(story, tmp_path)


@async_test
async def test_leaving_a_paused_batch_says_the_engine_keeps_it(state, tmp_path) -> None:
    """Nothing runs, so q asks nothing; but the engine stays for the paused files (it
    ends only when nothing waits), and the user was told nothing of it."""
    from subq.tui.app import SubqApp
    from test_tui import names, wait_until

    talk = Path(shutil.copy(DATA / "talk.mp4", tmp_path / "talk.mp4"))
    client = attach_engine(state, Settings(keep_alive=-1), paused=True)
    app = SubqApp(client, start_paths=[str(talk)])
    client.start()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: "talk.mp4" in names(app))
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, what="the app ended")
    kept = f"your engine (pid {client.pid}) keeps the paused batch (1 file waiting)"
    assert kept in app.farewell, app.farewell
    watcher = connect_engine(state)
    watcher.start()
    assert [j.state for j in watcher.jobs()] == [JobState.QUEUED]


def test_one_engine_per_state_file(state) -> None:
    client = attach_engine(state, Settings(keep_alive=-1), paused=True)
    second = subprocess.run(
        [sys.executable, "-m", "subq.engine.service", "--state", str(state), "--settings",
         Settings().to_json()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 3
    assert second.stderr.strip() == f"subq: an engine already runs for {state}"
    assert connect_engine(state).pid == client.pid  # the first one still answers


def raw_hello(state: Path, **hello: object) -> dict:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.connect(str(socket_path(state)))
    message = {"op": "hello", "protocol": 1, **hello}
    conn.sendall(json.dumps(message).encode() + b"\n")
    reply = json.loads(conn.makefile("rb").readline())
    conn.close()
    return reply


def test_another_version_is_refused_with_what_to_do(state) -> None:
    attach_engine(state, Settings(keep_alive=-1), paused=True)
    reply = raw_hello(state, version="0.0.1-older")
    assert reply["op"] == "refused"
    assert "this is subq 0.0.1-older" in reply["reason"] and "`subq stop`" in reply["reason"]


SYSTEM_PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None
)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to become another user")
@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="needs a python another user may run")
def test_another_user_is_refused(state) -> None:
    attach_engine(state, Settings(keep_alive=-1), paused=True)
    path = socket_path(state)
    assert path.stat().st_mode & 0o777 == 0o600

    def as_nobody() -> str:
        """What another user's process gets when it says hello (a fresh interpreter,
        started as uid 65534 by subprocess itself: no fork of this threaded process)."""
        code = (
            "import json, socket, sys\n"
            "c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.settimeout(10)\n"
            "try:\n"
            "    c.connect(sys.argv[1])\n"
            "except OSError as exc:\n"
            "    print(type(exc).__name__); sys.exit()\n"
            'c.sendall(b\'{"op": "hello", "protocol": 1, "version": "x"}\\n\')\n'
            "print(c.makefile('rb').readline().decode().strip())\n"
        )
        done = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-c", code, str(path)],
            user=65534,
            group=65534,
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )
        return done.stdout.strip() or done.stderr.strip()

    assert as_nobody().startswith("PermissionError")  # the file's mode keeps others out
    for folder in (path.parent, *path.parents):  # and if the modes were wrong, the kernel's
        if folder == Path("/"):  # word on the peer's uid still does
            break
        os.chmod(folder, folder.stat().st_mode | 0o011)
    os.chmod(path, 0o777)
    answer = as_nobody()
    assert answer.startswith("{"), answer  # a refusal, not a broken pipe on its hello
    assert json.loads(answer) == {
        "op": "refused",
        "reason": "this engine belongs to another user",
    }, answer


def test_a_client_that_stops_reading_is_dropped_and_the_engine_goes_on(
    state, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("SUBQ_CLIENT_BACKLOG", "1000")
    fine = attach_engine(state, Settings(keep_alive=-1), paused=True)
    try:
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(str(socket_path(state)))
        stalled.sendall(
            json.dumps({"op": "hello", "protocol": 1, "version": _version()}).encode() + b"\n"
        )
        events_of(fine)
        media = tmp_path / "many"
        media.mkdir()
        paths = []
        for i in range(2000):  # 2,000 events (2 MB): past the socket's buffer and 1,000 more
            (media / f"e{i:04d}.mp3").write_bytes(b"")
            paths.append(str(media / f"e{i:04d}.mp3"))
        fine.add(paths)
        assert wait_for(lambda: len(fine.jobs()) == 2000, 60), (len(fine.jobs()), fine.connected)
        stalled.settimeout(5)
        received = b""
        while chunk := stalled.recv(1 << 16):  # it was dropped: the stream ends
            received += chunk
        assert received.count(b"\n") < 2000
        fine.remove(fine.jobs()[0].id)  # the engine still answers the others
        assert wait_for(lambda: len(fine.jobs()) == 1999, 20)
    finally:
        fine.stop_engine(timeout=30)


def _version() -> str:
    from subq.engine.service import version

    return version()


@async_test
async def test_quitting_the_attached_app_leaves_the_batch_running_or_stops_it(
    state, tmp_path
) -> None:
    """The real app on the service at 80x24: q asks; l leaves the batch running (it
    finishes with no app attached); in a second app, q then s stops the engine."""
    from subq.tui.app import SubqApp
    from subq.tui.screens.dialogs import DetachScreen
    from test_tui import names, wait_until

    long = Path(shutil.copy(DATA / "long.mp3", tmp_path / "long.mp3"))
    story = Path(shutil.copy(DATA / "story.mp3", tmp_path / "story.mp3"))
    settings = Settings(keep_alive=-1, device="cpu", backend="whisper")  # slow: work to leave
    client = attach_engine(state, settings)
    app = SubqApp(client, start_paths=[str(long)])
    client.start()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: any(j.state == JobState.RUNNING for j in client.jobs()))
        await pilot.press("q")
        assert isinstance(app.screen, DetachScreen)
        await pilot.press("l")
        await wait_until(pilot, lambda: not app.is_running, what="the app ended")
    assert f"the batch goes on in your engine (pid {client.pid})" in app.farewell
    watcher = connect_engine(state)
    watcher.start()
    assert watcher.pid == client.pid and watcher.wait_idle(180)
    assert [j.state for j in watcher.jobs()] == [JobState.DONE]
    assert long.with_suffix(".srt").is_file()

    second = connect_engine(state)
    app = SubqApp(second, start_paths=[str(story)])
    second.start()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: "story.mp3" in names(app))
        await wait_until(pilot, lambda: any(j.state == JobState.RUNNING for j in second.jobs()))
        await pilot.press("q", "s")
        await wait_until(pilot, lambda: not app.is_running, 60, "the app ended")
    assert app.farewell == ""
    assert wait_for(lambda: not _service_answers(state), 30)
    with pytest.raises(EngineUnavailable):
        connect_engine(state)


@async_test
async def test_an_app_that_attaches_later_shows_what_was_logged_meanwhile(state, tmp_path):
    """Back from lunch: the log tells what happened while no app was attached (a file that
    failed, with its reason), in the log only: old news makes no toast."""
    from subq.tui.app import SubqApp
    from test_tui import log_text, wait_until

    bad = Path(shutil.copy(DATA / "noaudio.mp4", tmp_path / "noaudio.mp4"))
    first = attach_engine(state, Settings(keep_alive=-1))
    first.start()
    first.add([str(bad)])
    assert wait_for(lambda: [j.state for j in first.jobs()] == [JobState.FAILED], 60)
    first.close()  # the app that queued it is gone
    later = connect_engine(state)
    app = SubqApp(later)
    later.start()
    async with app.run_test(size=(120, 40)) as pilot:
        said = lambda: " ".join(log_text(app).split())  # noqa: E731 (long lines wrap)
        await wait_until(pilot, lambda: "no audio stream" in said(), what="the old line")
        await pilot.pause(1.0)  # toasts are flushed about every half second
        assert not list(app._notifications), [n.message for n in app._notifications]


def _service_answers(state: Path) -> bool:
    try:
        connect_engine(state, watch=False)
    except EngineUnavailable:
        return False
    return True


def test_the_engine_ends_by_itself_when_idle_and_alone(state) -> None:
    """keep-alive 1 s: models unloaded, queue empty, no app attached: the service ends."""
    from subq.engine.client import service_alive

    client = attach_engine(state, Settings(keep_alive=1), paused=True)
    assert service_alive(state)
    time.sleep(2.5)
    assert service_alive(state)  # an app is attached: it stays
    client.close()
    assert wait_for(lambda: not service_alive(state), 30)
    assert not socket_path(state).exists()


def test_an_app_whose_engine_ended_says_so_and_takes_no_order(state) -> None:
    first = attach_engine(state, Settings(keep_alive=-1), paused=True)
    other = connect_engine(state)
    heard = events_of(other)
    first.stop_engine(timeout=30)
    assert wait_for(lambda: not other.connected, 30)
    assert any(type(e).__name__ == "EngineStateChanged" and e.state == "stopped" for e in heard)
    other.pause()  # a key pressed after the engine ended: a line, not a traceback
    messages = [e.message for e in heard if type(e).__name__ == "LogEmitted"]
    assert any("the engine was stopped" in m for m in messages), messages
    assert any("the order was not sent" in m for m in messages), messages
