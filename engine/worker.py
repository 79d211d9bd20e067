"""Worker processes, the engine's side: start, talk to, wait on and stop one per device.

Each worker is a fresh interpreter (`python -P -m subq.engine.worker_main`), spawned and
never forked (no CUDA context or threads cross a fork), in its own session (the user's
Ctrl-C and a dropped SSH reach the engine, never the worker), with an environment built
here and passed whole (thread counts, the one GPU it may see) so the engine never mutates
`os.environ`. Its stdout and stderr go to the log. One duplex channel per worker: a socket
pair, a `multiprocessing.connection.Connection` on each end, carrying the plain messages of
worker_protocol.py. No `multiprocessing.Queue` (a worker killed mid-write can leave its lock
held and its data torn) and no `ProcessPoolExecutor` (one death breaks the pool).

`wait_any` waits on every worker's channel and process at once (`multiprocessing.connection.
wait` over the connections and a pidfd per process), so a worker that dies for any reason
(kill -9, a segfault, the OOM killer) is reported at once, with its signal's name.

A call is one `request`: it numbers the request, holds the worker's call lock for the
whole call (one caller per worker, whichever thread asks), and takes only replies that
name its number. A reply for another call, a frame that cannot be read or one over
`MAX_FRAME` means the channel can no longer be trusted: the worker is killed, and the call
ends as for a death ("killed: ..."). A call that hears nothing for its `timeout` is hung:
the worker is killed ("hung (no answer for N s)"). Once a Stop was sent, a worker that has
not ended the call within `STOP_GRACE` seconds is killed too, so a pause or a cancel never
waits on a stuck call.

Threads: `send` may be called from any thread (a lock keeps frames whole); `request` and
everything that reads the channel run under the call lock, one thread at a time; `alive`,
`kill` and `_reap` may be called from any thread (the reap lock closes the fds once).

This module imports no model library, and neither does reading a reply: the engine's process
stays free of torch, CTranslate2, whisper and transformers.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import wait as _wait
from pathlib import Path
from typing import Any

from . import worker_protocol as p
from .worker_env import DEFAULT_LOG, WorkerError
from .worker_host import LOCAL, WorkerHost, WorkerSpec

POLL_SECONDS = 0.1  # how often a worker without a pidfd is polled for its exit
# Replies that end a request (the others report progress on the way).
FINAL = (p.Loaded, p.Unloaded, p.Done, p.Stopped, p.Error, p.Stats, p.Exited)
STOP_GRACE = 5.0  # seconds a worker has to end a call after a Stop before it is killed


class CallHung(Exception):
    """A call heard nothing from its worker for its whole timeout; the worker was killed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"hung (no answer for {seconds:g} s)")
        self.seconds = seconds


def describe_exit(code: int) -> str:
    """'exit status 0', 'exit status 70' or 'signal 9 (SIGKILL)' for a return code."""
    if code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"
    return f"signal {-code} ({name})"


class WorkerProcess:
    """One worker process on one device entry ("cpu", "cuda:1"), with its channel.

    Start it from the thread that will own it for its whole life (the engine thread): on
    Linux the worker is killed when the thread that spawned it ends (PR_SET_PDEATHSIG).
    """

    def __init__(
        self,
        device: str = "cpu",
        *,
        threads: int | None = None,
        gpu_uuid: str | None = None,
        log: str | Path | None = DEFAULT_LOG,
        preload: Iterable[str] = (),
        extra_env: Mapping[str, str] | None = None,
        pdeathsig: bool = True,
        host: WorkerHost | None = None,
    ) -> None:
        self.device = device
        spec = WorkerSpec(
            device, threads, gpu_uuid, log, tuple(preload), dict(extra_env or {}), pdeathsig
        )
        self.started = time.monotonic()
        self.popen, self.conn, self.local_device, self.log_path = (host or LOCAL).launch(spec)
        self.pid = self.popen.pid
        self._sent = self._heard = time.monotonic()  # the call's last request and reply
        self.sentinel: int | None = self.popen.sentinel()
        self.ready: p.Ready | None = None
        self.exited: p.Exited | None = None
        self._eof = False
        self._broken: str | None = None  # why the channel cannot be trusted any more
        self._inbox: collections.deque[Any] = collections.deque()  # read by _next only
        self._send_lock = threading.Lock()
        self._call_lock = threading.Lock()  # one call at a time, whichever thread asks
        self._reap_lock = threading.Lock()
        self._calls = itertools.count(1)
        self._stop_sent: float | None = None  # when a Stop for this call's job went out
        self._call_job = ""  # the job the running call is for ("" for Load, Unload)

    def __repr__(self) -> str:
        state = self.exited.how if self.exited else "running"
        return f"<WorkerProcess {self.device} pid {self.pid} {state}>"

    @property
    def alive(self) -> bool:
        """Whether the process still runs (a dead one not yet reaped is not alive)."""
        return self.exited is None and self.popen.poll() is None

    @property
    def in_call(self) -> bool:
        return self._call_lock.locked()

    def send(self, message: Any) -> bool:
        """Send a request (any thread); False if the worker is gone (wait_any will say how)."""
        if self.exited is not None:
            return False
        if isinstance(message, p.Stop) and message.job == self._call_job and self._call_job:
            self._stop_sent = self._stop_sent or time.monotonic()  # (a Load has no job)
        data = p.dumps(message)
        self._sent = time.monotonic()
        with self._send_lock:
            try:
                self.conn.send_bytes(data)
            except (OSError, ValueError):
                return False
        return True

    def wait_ready(self, timeout: float | None = 120.0) -> p.Ready:
        """Block until the worker's Ready (its imports done); WorkerError if it dies first."""
        while self.ready is None:
            reply = self._next(timeout)
            if reply is None:
                raise TimeoutError(f"the worker on {self.device} not ready in {timeout} s")
            if isinstance(reply, p.Exited):
                raise WorkerError(f"the worker on {self.device} ended at start ({reply.how})")
        return self.ready

    def request(
        self,
        message: Any,
        on_message: Callable[[Any], None] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send `message` as a new call and return its final reply (or `Exited`), handing
        the others (Progress, Checkpointed) to `on_message`. A call that hears nothing for
        `timeout` seconds kills the worker and raises `CallHung`; see the module's
        docstring for replies that name another call and for Stop. One call at a time:
        a second caller waits here for the first call to end."""
        with self._call_lock:
            call = next(self._calls)
            if "call" in {f.name for f in dataclasses.fields(message)}:
                message = dataclasses.replace(message, call=call)
            self._stop_sent, accepted = None, False
            self._call_job = getattr(message, "job", "")
            self.send(message)  # if the worker is gone, _next reads its last words and Exited
            while True:
                reply = self._next(self._wait(timeout))
                if reply is None:
                    if self._stop_sent is not None and self._stop_overdue():
                        why = f"did not stop within {STOP_GRACE:g} s"
                        return dataclasses.replace(self._end_broken(why), stuck=True)
                    if timeout is not None and self._silent_for(timeout):
                        self.kill()
                        raise CallHung(timeout)
                    continue
                if isinstance(reply, p.Exited):
                    return dataclasses.replace(reply, accepted=accepted)
                if isinstance(reply, p.Accepted) and reply.call == call:
                    accepted = True
                    continue
                if isinstance(reply, p.Stats) and reply.call != call:
                    continue  # an answer to a GetStats sent outside any call: harmless
                if getattr(reply, "call", call) != call:
                    return self._end_broken(f"sent a reply for call {reply.call}, not {call}")
                self._heard = time.monotonic()
                if isinstance(reply, FINAL):
                    return reply
                if on_message is not None:
                    on_message(reply)

    @staticmethod
    def _wait(timeout: float | None) -> float:
        """How long one read may block: a second, so the silence limit and a Stop's grace
        (a Stop may be sent from another thread at any time) are checked every second."""
        return 1.0 if timeout is None else min(1.0, timeout)

    def _silent_for(self, seconds: float) -> bool:
        return time.monotonic() - max(self._heard, self._sent) >= seconds

    def _stop_overdue(self) -> bool:
        return self._stop_sent is not None and time.monotonic() - self._stop_sent >= STOP_GRACE

    def _end_broken(self, why: str) -> p.Exited:
        """The channel cannot be trusted: kill the worker; the call ends as for a death."""
        self._broken = self._broken or why
        exited = self.kill()
        return p.Exited(exited.code, f"killed: it {self._broken}")

    def _next(self, timeout: float | None) -> Any:
        """The next message (None on timeout); after the worker's end, its Exited."""
        if not self._inbox:
            if self.exited is not None:
                return self.exited
            self._inbox.extend(message for _, message in wait_any([self], timeout))
        return self._inbox.popleft() if self._inbox else None

    def _read(self) -> list[Any]:
        """Every message already in the channel; on end-of-pipe, the process's exit after."""
        messages: list[Any] = []
        while not self._eof:
            try:
                if not self.conn.poll(0):
                    break
                data = self.conn.recv_bytes(p.MAX_FRAME)
            except EOFError:
                self._eof = True
                break
            except OSError as exc:
                self._eof = True
                if "bad message length" in str(exc):  # a frame over MAX_FRAME
                    self._broken = self._broken or f"sent a frame over the size cap ({exc})"
                break  # any other: the worker's end of the channel is gone (it died)
            try:
                message = p.loads(data)
            except Exception as exc:  # the channel is out of step: nothing after it is read
                self._eof = True
                self._broken = self._broken or f"sent a message that cannot be read ({exc})"
                break
            if isinstance(message, p.Ready):
                self.ready = message
            messages.append(message)
        return messages

    def _reap(self, grace: float = 2.0) -> p.Exited:
        """Wait for the process (killing it if its channel ended but it lingers); Exited."""
        with self._reap_lock:
            if self.exited is not None:
                return self.exited
            if self._broken:
                self._signal(signal.SIGKILL)
            try:
                code = self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                code = self.popen.wait()
            how = f"killed: it {self._broken}" if self._broken else describe_exit(code)
            self.exited = p.Exited(code, how)
            self._close()
            return self.exited

    def _signal(self, sig: int) -> None:
        self.popen.signal(sig)

    def _close(self) -> None:
        self.conn.close()
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None

    def footprint(self, nvml: Any = None) -> tuple[int, int | None]:
        """(RSS of the worker's process tree, its GPU bytes or None), read where it runs."""
        return self.popen.footprint(nvml) if self.alive else (0, None)

    def kill(self) -> p.Exited:
        """SIGKILL now, and reap."""
        if self.exited is None:
            self._signal(signal.SIGKILL)
        return self._reap(grace=10.0)

    def stop(self, timeout: float = 5.0) -> p.Exited:
        """Ask the worker to quit (at its next window), then SIGTERM, then SIGKILL; reaps."""
        if self.exited is not None:
            return self.exited
        self.send(p.Quit())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(sig)
                continue
            break
        return self._reap(grace=timeout)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_any(workers: Iterable[WorkerProcess], timeout: float | None = None) -> list[tuple]:
    """(worker, message) pairs from whichever workers have something, in arrival order per
    worker; a worker that died comes with its messages first, then `Exited`. Empty on
    timeout. Waits on the channels and the processes together (a pidfd each; a worker
    without one is polled every POLL_SECONDS)."""
    live = [w for w in workers if w.exited is None]
    deadline = None if timeout is None else time.monotonic() + timeout
    while live:
        handles: dict[Any, WorkerProcess] = {}
        for w in live:
            handles[w.conn] = w
            if w.sentinel is not None:
                handles[w.sentinel] = w
        polled = any(w.sentinel is None for w in live)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if polled:
            left = POLL_SECONDS if left is None else min(left, POLL_SECONDS)
        ready = {id(handles[h]): handles[h] for h in _wait(list(handles), left)}
        if polled:
            ready.update(
                {id(w): w for w in live if w.sentinel is None and w.popen.poll() is not None}
            )
        out: list[tuple] = []
        for w in ready.values():
            out += [(w, m) for m in w._read()]
            if w._eof or w.popen.poll() is not None:
                out += [(w, m) for m in w._read()]  # the last words of a dying worker
                out.append((w, w._reap()))
        if out:
            return out
        if deadline is not None and time.monotonic() >= deadline:
            return []
    return []
