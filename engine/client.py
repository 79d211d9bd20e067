"""The app's end of the engine service (service.py): an Engine in another process.

`EngineClient` has the control methods, views and events the app uses of `Engine`, so the
same screens drive either. Orders go out as JSON lines and return at once, as `Engine`'s
do; the views (jobs, state, models, settings) are a mirror built from the service's
snapshot and kept by its numbered events, which the client checks for gaps. When the
connection ends (the service stopped, or dropped this client for falling behind), the
subscribers hear an `EngineStateChanged("stopped")` and a log line saying why.

Ownership: the reader thread alone reads the socket and changes the mirror, under
`_lock`; any thread may send an order (one line at a time, under `_send_lock`). A
`wait_idle` caller puts its Event in `_answers` before sending; the reader alone fills
`_idle` and sets the Event, and the caller alone takes its answer after (single dict
operations, atomic in CPython).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import wire
from .events import (
    EngineState,
    EngineStateChanged,
    Event,
    JobChanged,
    JobRemoved,
    LoadedModel,
    ModelLoaded,
    ModelUnloaded,
    QueueReordered,
    Subscribers,
)
from .jobs import Job
from .service import PROTOCOL, version
from .service_socket import short_address, socket_path
from .settings import Settings

START_TIMEOUT = 60.0  # a cold start imports torch: seconds on a slow disk


class EngineUnavailable(Exception):
    """No engine service answers for this state file, or it refused us (str(): why)."""


class EngineClient:
    """An attached app's engine: orders to the service, a mirror of its queue."""

    detached = True  # the app asks before quitting whether to leave the batch running

    def __init__(
        self, state: Path, conn: socket.socket, reader: Any, welcome: dict[str, Any]
    ) -> None:
        self.state_path = state
        self._conn = conn
        self._reader = reader  # the one buffered reader: it may hold events read ahead
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._subscribers = Subscribers()
        self._next_id = 0
        snap = welcome["snapshot"]
        self.pid: int = snap["pid"]
        self.rss_bytes: int | None = snap.get("rss_bytes")  # the service's own, at attach
        self._seq: int = welcome["seq"]
        self._jobs: dict[int, Job] = {j.id: j for j in wire.decode(snap["jobs"])}
        self._order: list[int] = list(self._jobs)
        self.settings: Settings = wire.decode(snap["settings"])
        self.state = EngineState(snap["state"])
        self._paused: bool = snap["paused"]
        self._models: list[LoadedModel] = list(wire.decode(snap["models"]))
        self._earlier: tuple[Event, ...] = tuple(wire.decode(snap.get("log", [])))  # the log
        self.connected = True
        self._answers: dict[int, threading.Event] = {}  # wait_idle calls not answered yet
        self._idle: dict[int, bool] = {}
        self._thread = threading.Thread(target=self._read, name="subq-client", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> None:
        """Hear the events from now on, and first the lines the engine logged before this
        client attached (its welcome's). One logged since may come before them; one logged
        between `start` and the first subscriber reaches no one, as any event then does
        (the queue's mirror has their effect)."""
        self._subscribers.add(fn)
        for said in self._earlier:
            fn(said)

    def unsubscribe(self, fn: Callable[[Event], None]) -> None:
        self._subscribers.remove(fn)

    def start(self) -> None:
        """Start hearing events (the app subscribes first, as with an Engine)."""
        if not self._thread.is_alive() and self.connected:
            self._thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Detach: the engine and its batch go on (stop_engine ends them)."""
        self.close()

    def stop_engine(self, timeout: float = 30.0) -> bool:
        """End the service at its next safe point (the running file keeps its checkpoint);
        True once its connection has closed."""
        self.connected = False  # what follows is our own doing: no "detached" warning
        with contextlib.suppress(OSError):
            self._send({"op": "stop"})
        if self._thread.is_alive():
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def emergency_stop(self) -> None:
        """Nothing to do here: the engine is another process and keeps its own state."""

    def close(self) -> None:
        self.connected = False
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """As Engine.wait_idle; the answer comes after every event it waited for."""
        if not self.connected:
            return False
        self._next_id += 1
        call_id = self._next_id
        answered = self._answers[call_id] = threading.Event()
        self._send({"op": "wait_idle", "id": call_id, "timeout": timeout})
        if not answered.wait(None if timeout is None else timeout + 5):
            return False
        return bool(self._idle.pop(call_id, False)) and self.connected

    # -- orders (each returns at once, as Engine's do) ------------------------------------
    def add(self, paths: Iterable[str], settings: Settings | None = None) -> None:
        # the service's working folder is not ours: send absolute paths
        full = [os.path.abspath(os.path.expanduser(str(p))) for p in paths]
        self._call("add", full, settings)

    def pause(self) -> None:
        self._call("pause")

    def resume(self) -> None:
        self._call("resume")

    def move(self, job_id: int, where: str) -> None:
        self._call("move", job_id, where)

    def cancel(self, job_id: int) -> None:
        self._call("cancel", job_id)

    def remove(self, job_id: int) -> None:
        self._call("remove", job_id)

    def retry(self, job_id: int) -> None:
        self._call("retry", job_id)

    def clear_finished(self) -> None:
        self._call("clear_finished")

    def unload(self, kind: str = "all") -> None:
        self._call("unload", kind)

    def release_gpu(self) -> None:
        self._call("release_gpu")

    def start_anyway(self, job_id: int) -> None:
        self._call("start_anyway", job_id)

    def worker_order(self, entry: str, order: str) -> None:
        self._call("worker_order", entry, order)

    def update_settings(self, settings: Settings) -> None:
        self.settings = settings.validate()
        self._call("update_settings", self.settings)

    # -- views ------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        with self._lock:
            return [self._jobs[i] for i in self._order if i in self._jobs]

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def loaded_models(self) -> tuple[LoadedModel, ...]:
        with self._lock:
            return tuple(self._models)

    # -- the wire ---------------------------------------------------------------------
    def _call(self, name: str, *args: Any) -> None:
        """Send an order; with no engine attached any more, say so instead (a key pressed
        after the engine ended must not end the app with a traceback)."""
        if self.connected:
            self._next_id += 1
            message = {"op": "call", "id": self._next_id, "name": name, "args": wire.encode(args)}
            try:
                self._send(message)
                return
            except OSError:
                pass
        self._subscribers.log(
            "warning", "no engine is attached: the order was not sent (open subq again)"
        )

    def _send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            self._conn.sendall(json.dumps(message).encode() + b"\n")

    def _read(self) -> None:
        why = "the engine ended"
        try:
            for raw in self._reader:
                message = json.loads(raw)
                op = message.get("op")
                if op == "event":
                    if message["seq"] != self._seq + 1:
                        why = f"events {self._seq + 1}-{message['seq'] - 1} were lost"
                        break
                    self._seq = message["seq"]
                    event = wire.decode(message["event"])
                    self._mirror(event)
                    self._subscribers.publish(event)
                elif op == "reply" and message.get("error"):
                    self._subscribers.log(
                        "error", f"the engine refused an order: {message['error']}"
                    )
                elif op == "idle":
                    self._idle[message["id"]] = message["ok"]
                    self._answers.pop(message["id"], threading.Event()).set()
                elif op == "ended":
                    why = "the engine was stopped"
        except (OSError, ValueError) as exc:
            why = f"the connection to the engine broke ({exc})"
        for answered in list(self._answers.values()):
            answered.set()  # nobody will answer them now
        if self.connected:  # not our own detach
            self.connected = False
            self.state = EngineState.STOPPED
            self._subscribers.log("warning", f"{why}: the app is detached from it")
            self._subscribers.publish(EngineStateChanged(state=EngineState.STOPPED))

    def _mirror(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, JobChanged):
                if event.job.id not in self._jobs:
                    self._order.append(event.job.id)
                self._jobs[event.job.id] = event.job
            elif isinstance(event, JobRemoved):
                self._jobs.pop(event.job_id, None)
                self._order = [i for i in self._order if i != event.job_id]
            elif isinstance(event, QueueReordered):
                listed = set(event.order)
                self._order = [*event.order, *(i for i in self._order if i not in listed)]
            elif isinstance(event, EngineStateChanged):
                self.state = EngineState(event.state)
                self._paused = self.state in (EngineState.PAUSED, EngineState.PAUSING)
            elif isinstance(event, ModelLoaded):
                self._models.append(LoadedModel(event.kind, event.name, event.device, event.bytes))
            elif isinstance(event, ModelUnloaded):
                key = (event.kind, event.name, event.device)
                self._models = [m for m in self._models if (m.kind, m.name, m.device) != key]


def connect_engine(state: Path, *, watch: bool = True, timeout: float = 5.0) -> EngineClient:
    """Attach to the service of `state`; EngineUnavailable when none runs or it refuses."""
    path = socket_path(state)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        with short_address(path) as address:
            conn.connect(address)
        conn.sendall(
            json.dumps(
                {"op": "hello", "protocol": PROTOCOL, "version": version(), "watch": watch}
            ).encode()
            + b"\n"
        )
        reader = conn.makefile("rb")
        line = reader.readline()
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        conn.close()
        raise EngineUnavailable(f"no engine runs for {state}") from exc
    except OSError as exc:
        conn.close()
        raise EngineUnavailable(f"the engine for {state} does not answer ({exc})") from exc
    message = json.loads(line) if line else {"op": "refused", "reason": "it closed at once"}
    if message.get("op") != "welcome":
        conn.close()
        raise EngineUnavailable(str(message.get("reason", message)))
    conn.settimeout(None)
    return EngineClient(state, conn, reader, message)


def attach_engine(
    state: Path, settings: Settings, *, paused: bool | Callable[[], bool] = False
) -> EngineClient:
    """The user's engine for `state`, started (in its own session) if none runs. Whether
    one runs is the service lock's word, not the socket's: a service that is starting, or
    one that just died and left its socket, must neither be doubled nor waited for.
    `paused` may be a question asked only if the engine has to be started (it reads the
    state file, which a running engine holds)."""
    try:
        return connect_engine(state)
    except EngineUnavailable as exc:
        if not isinstance(exc.__cause__, OSError):
            raise  # it answered, and said no (another version)
    started: subprocess.Popen | None = None
    spawns = 0
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        # No live service, and none of ours on its way (never started: the lock was still
        # the dying one's when asked; or it ended at start): start one, a few times at most.
        ours_gone = started is None or started.poll() is not None
        if ours_gone and spawns < 3 and not service_alive(state):
            started = spawn(state, settings, paused=paused() if callable(paused) else paused)
            spawns += 1
        try:
            return connect_engine(state)
        except EngineUnavailable as exc:
            if not isinstance(exc.__cause__, OSError) or time.monotonic() > deadline:
                raise EngineUnavailable(f"the engine for {state} did not start: {exc}") from None
            time.sleep(0.1)


def service_alive(state: Path) -> bool:
    """Whether a live service holds `state`'s lock (the kernel drops it when one dies)."""
    import fcntl

    from .service_socket import lock_path

    try:
        fd = os.open(lock_path(state), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def spawn(state: Path, settings: Settings, *, paused: bool = False) -> subprocess.Popen:
    """Start the service detached from this terminal: its own session, no stdin/stdout;
    what it says before its log is open goes to the log file's folder."""
    from .private import open_private_log, private_dir
    from .settings import log_path

    log = log_path()
    private_dir(log.parent)
    args = [sys.executable, "-m", "subq.engine.service", "--state", str(state)]
    args += ["--settings", settings.to_json(), *(["--paused"] if paused else [])]
    with open_private_log(log.with_name("engine.stderr.log")) as err:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
