"""The engine as a per-user service: the batch outlives the terminal that started it.

`python -m subq.engine.service --state FILE` runs one `Engine` in a process of its own
session (no terminal's SIGHUP reaches it) and serves the app's orders and events on a Unix
socket beside the state file, `FILE.sock` (in the user's private data folder by default:
not a runtime folder that logout wipes, nor /tmp that a cleaner empties). `client.py` is
the other end; docs/architecture.md says why this shape.

- One service per state file: `FILE.engine-lock` is flock'ed for the service's life (a lock
  the kernel drops when the process dies, not a pid file); a socket left by a dead service
  is removed and bound again by the next one.
- Only the owner connects: the socket is 0600 in a 0700 folder, and every connection's peer
  uid (SO_PEERCRED, from the kernel) must be ours. A peer may call the engine's control
  methods in `CALLS` and nothing else; messages are JSON (wire.py), never code.
- Nothing is lost across the seam: events are numbered; a client gets a snapshot taken
  under the same lock that numbers events, then every event after it. A client that
  cannot keep up (a stalled SSH pipe) is dropped when its backlog is full and may attach
  again; it never slows the engine.
- It ends by itself when no app is attached, nothing is queued or running and no model is
  loaded for `idle_exit` seconds (the keep-alive setting; -1: never); `stop` or SIGTERM end
  it at the next safe point, the running file keeping its checkpoint.

Ownership: `_lock` guards `_clients`, `_seq` and `_said`; each client's socket is written by
its own writer thread only and read by its own reader thread only.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import wire
from .events import JobChanged, LogEmitted
from .jobs import JobState
from .private import private_dir
from .service_socket import listen, peer_uid, socket_path, take_lock

PROTOCOL = 1
# events a client may fall behind by before it is dropped (tests make it small)
BACKLOG = int(os.environ.get("SUBQ_CLIENT_BACKLOG", "20000"))
LOG_KEPT = 500  # the last log lines an app that attaches is given: what happened meanwhile
CALLS = frozenset(
    {
        "add",
        "pause",
        "resume",
        "move",
        "cancel",
        "remove",
        "retry",
        "clear_finished",
        "unload",
        "release_gpu",
        "start_anyway",
        "worker_order",
        "update_settings",
    }
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("subq")
    except PackageNotFoundError:
        return "unknown"


class Client:
    """One attached app: a reader thread (its orders) and a writer thread (its events)."""

    def __init__(self, conn: socket.socket, service: EngineService) -> None:
        self.conn = conn
        self.service = service
        self.outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=BACKLOG)
        self.alive = True
        self.held: list[bytes] | None = []  # events while its snapshot is taken; then None

    def send(self, message: dict[str, Any]) -> None:
        self.push(json.dumps(message).encode() + b"\n")

    def push(self, line: bytes) -> None:
        """Queue a line for the writer; a full backlog drops this client, never waits."""
        try:
            self.outbox.put_nowait(line)
        except queue.Full:
            self.close()

    def finish(self) -> None:
        """End after what is queued has been sent (a refusal, a one-shot snapshot)."""
        self.alive = False
        with contextlib.suppress(queue.Full):
            self.outbox.put_nowait(None)

    def refuse(self, reason: str) -> None:
        """Refuse, after reading the client's hello: closed at once, the connection could
        break that hello (EPIPE), and the client said a broken pipe instead of why."""
        with contextlib.suppress(OSError):
            self.conn.settimeout(5.0)
            self.conn.makefile("rb").readline(64 * 1024)
        self.send({"op": "refused", "reason": reason})
        self.finish()

    def close(self) -> None:
        """End now, dropping what is queued (a client too slow to keep up, or gone)."""
        if self.alive:
            self.alive = False
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(queue.Full):
                self.outbox.put_nowait(None)

    def write_loop(self) -> None:
        try:
            while (line := self.outbox.get()) is not None:
                self.conn.sendall(line)
        except OSError:
            pass
        finally:
            self.alive = False
            self.service.detach(self)
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.conn.close()

    def read_loop(self) -> None:
        try:
            for raw in self.conn.makefile("rb"):
                if not self.alive:
                    return
                self.service.handle(self, json.loads(raw))
        except (OSError, ValueError):
            pass
        finally:
            self.close()


class EngineService:
    """Serves one Engine to the apps of its user until stopped or idle."""

    def __init__(self, engine: Any, state: Path, idle_exit: float) -> None:
        self.engine = engine
        self.state = state
        self.idle_exit = idle_exit
        self._lock = threading.Lock()
        self._clients: set[Client] = set()
        self._seq = 0
        # the last log lines, for an app that attaches later (what happened while away)
        self._said: collections.deque[Any] = collections.deque(maxlen=LOG_KEPT)
        self.stopping = threading.Event()
        self._idle_since = time.monotonic()

    # -- events: numbered under the lock, encoded once, queued to every client -------------
    def publish(self, event: Any) -> None:
        with self._lock:
            self._seq += 1
            said = _as_said(event)
            if said is not None and not (self._said and self._said[-1].message == said.message):
                self._said.append(said)  # (a failure is often logged, then its job failed)
            line = json.dumps({"op": "event", "seq": self._seq, "event": wire.encode(event)})
            data = line.encode() + b"\n"
            for client in list(self._clients):
                if client.held is None:
                    client.push(data)
                else:
                    client.held.append(data)

    def snapshot(self) -> dict[str, Any]:
        e = self.engine
        return {
            "jobs": wire.encode(e.jobs()),
            "settings": wire.encode(e.settings),
            "state": str(e.state),
            "paused": e.paused,
            "models": wire.encode(e.loaded_models),
            "pid": os.getpid(),
            "state_file": str(self.state),
            "rss_bytes": _rss(),
        }

    def detach(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)
            if not self._clients:
                self._idle_since = time.monotonic()

    # -- orders -----------------------------------------------------------------------------
    def handle(self, client: Client, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "hello":
            self._hello(client, message)
        elif op == "stop":  # any version may stop it: how a mismatched client gets past
            client.send({"op": "stopping"})
            self.stopping.set()
        elif op == "call" and client in self._clients:
            self._call(client, message)
        elif op == "wait_idle" and client in self._clients:  # answered after the events
            threading.Thread(target=self._wait_idle, args=(client, message), daemon=True).start()
        else:
            client.send({"op": "refused", "reason": f"unexpected message {op!r}"})
            client.finish()

    def _hello(self, client: Client, message: dict[str, Any]) -> None:
        mine = version()
        if message.get("protocol") != PROTOCOL or message.get("version") != mine:
            reason = (
                f"the engine running for {self.state} is subq {mine} (pid {os.getpid()}); "
                f"this is subq {message.get('version')}: `subq stop` ends it (the queue is "
                "kept), then start subq again"
            )
            client.send({"op": "refused", "reason": reason})
            client.finish()
            return
        # Numbered first, then looked at: the snapshot (taken outside the lock, since the
        # engine publishes while holding its queue's lock) is at least as new as event
        # `seq`, and the events held meanwhile follow it, so nothing falls in between; one
        # applied again on a newer snapshot is put right by the ones after it.
        with self._lock:
            seq = self._seq
            self._clients.add(client)
            said = list(self._said)  # up to `seq`, as the snapshot
        snapshot = {**self.snapshot(), "log": wire.encode(said)}
        reply = {"op": "welcome", "version": mine, "seq": seq, "snapshot": snapshot}
        with self._lock:
            client.push(json.dumps(reply).encode() + b"\n")
            for line in client.held or ():
                client.push(line)
            client.held = None
        if not message.get("watch", True):
            self.detach(client)
            client.finish()  # a one-shot look (subq status)

    def _wait_idle(self, client: Client, message: dict[str, Any]) -> None:
        timeout = message.get("timeout")
        ok = self.engine.wait_idle(float(timeout) if timeout is not None else None)
        client.send({"op": "idle", "id": message.get("id"), "ok": ok})

    def _call(self, client: Client, message: dict[str, Any]) -> None:
        name, call_id = message.get("name"), message.get("id")
        if name not in CALLS:
            client.send({"op": "reply", "id": call_id, "error": f"no such order {name!r}"})
            return
        try:
            args = wire.decode(message.get("args", []))
            getattr(self.engine, name)(*args)
        except Exception as exc:  # a bad order is answered, never the service's end
            client.send({"op": "reply", "id": call_id, "error": f"{type(exc).__name__}: {exc}"})
            return
        client.send({"op": "reply", "id": call_id, "error": None})

    # -- serving ----------------------------------------------------------------------------
    def serve(self, listener: socket.socket) -> None:
        self.engine.subscribe(self.publish)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        while not self.stopping.wait(1.0):
            if self._idle_too_long():
                self.engine.log("info", "no app attached and nothing to do: the engine ends")
                break

    def _idle_too_long(self) -> bool:
        if self.idle_exit < 0:
            return False
        busy = self.engine.queue.busy()  # runs, waits, or has an order out to another process
        with self._lock:
            if self._clients or busy or self.engine.loaded_models:
                self._idle_since = time.monotonic()
                return False
            return time.monotonic() - self._idle_since >= self.idle_exit

    def _accept(self, listener: socket.socket) -> None:
        me = os.getuid()
        while not self.stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            client = Client(conn, self)
            threading.Thread(target=client.write_loop, daemon=True).start()
            if peer_uid(conn) != me:
                why = "this engine belongs to another user"
                threading.Thread(target=client.refuse, args=(why,), daemon=True).start()
                continue
            threading.Thread(target=client.read_loop, daemon=True).start()

    def close_clients(self) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.send({"op": "ended"})
            client.finish()


def _as_said(event: Any) -> LogEmitted | None:
    """The line an app's log shows for `event`, kept for an app that attaches later: the
    engine's own lines, and a file that failed with its reason (the app logs those itself)."""
    if isinstance(event, LogEmitted):
        return dataclasses.replace(event, earlier=True)
    if isinstance(event, JobChanged) and event.job.state == JobState.FAILED != event.previous:
        job, at = event.job, event.at
        return LogEmitted("error", job.error or f"{job.name} failed", job.id, at=at, earlier=True)
    return None


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m subq.engine.service")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--settings", required=True, help="Settings as JSON")
    parser.add_argument("--paused", action="store_true")
    args = parser.parse_args(argv)
    from .runner import Engine
    from .settings import Settings

    state: Path = args.state
    private_dir(state.parent)
    lock = take_lock(state)
    if lock is None:
        print(f"subq: an engine already runs for {state}", file=sys.stderr)
        return 3
    settings = Settings.from_json(args.settings)
    engine = Engine(settings, state, whole_queue=True, paused=args.paused)
    service = EngineService(engine, state, settings.keep_alive)
    signal.signal(signal.SIGTERM, lambda *_: service.stopping.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = listen(state)
    engine.start()
    try:
        service.serve(listener)
    finally:
        engine.shutdown(timeout=10)
        if engine.state != "stopped":
            engine.emergency_stop()
        service.close_clients()
        with contextlib.suppress(OSError):
            socket_path(state).unlink()
        listener.close()
        engine.close()
        os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
