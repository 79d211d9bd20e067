"""The node's side of a cluster worker: a Ray actor that runs subq's own worker process.

The actor is a relay, not a second implementation of the worker: it starts
`python -m subq.engine.worker_main` on its node exactly as the engine starts one locally
(worker_host.LocalHost, with the node's environment), and moves the protocol's frames
between that process and the engine unchanged. So a cluster worker loads, decodes,
checkpoints and stops as a local one does, and a death on the node (the worker's, the
actor's or the node's) ends the relay the way a local death ends a channel.

The actor is threaded (Ray's `max_concurrency`): `replies` streams for the worker's whole
life while `send`, `signal` and `footprint` are answered beside it. Its state has one owner
each: the worker process and the channel's reading end belong to `replies`'s thread; `send`
writes under `_send_lock` (frames stay whole); the rest is set once in the constructor.
The worker dies with the actor (PR_SET_PDEATHSIG names the actor's process as its parent).

This module is imported on the nodes; it imports no Ray itself (cluster.py wraps it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

from . import faults, memory
from .outputs import content_fingerprint
from .worker_host import LOCAL, WorkerSpec

POLL_SECONDS = 1.0  # how long `replies` waits for a frame before it checks the process


class WorkerActor:
    """One subq worker on this node, relayed (see the module's docstring)."""

    def __init__(self, spec: WorkerSpec) -> None:
        log = Path(spec.log).expanduser() if spec.log else None  # a path on this node
        if log is not None:
            with contextlib.suppress(OSError):
                log.parent.mkdir(parents=True, exist_ok=True)
        self.process, self.conn, _, _ = LOCAL.launch(dataclasses.replace(spec, log=log))
        self._send_lock = threading.Lock()

    def pid(self) -> int:
        """The worker's pid on this node, for the engine's rows."""
        return self.process.pid

    def send(self, frame: bytes) -> bool:
        with self._send_lock:
            try:
                self.conn.send_bytes(frame)
            except (OSError, ValueError):
                return False
        return True

    def replies(self) -> Iterator[bytes | int]:
        """Every frame the worker sends, as it sends it; last, its exit code (an int)."""
        while True:
            try:
                if self.conn.poll(POLL_SECONDS):
                    yield self.conn.recv_bytes()
                    continue
            except (EOFError, OSError):
                break
            if self.process.poll() is not None and not self._readable():
                break
        with contextlib.suppress(OSError):
            self.conn.close()
        yield self.process.wait()

    def _readable(self) -> bool:
        with contextlib.suppress(EOFError, OSError):
            return self.conn.poll(0)
        return False

    def signal(self, sig: int) -> None:
        self.process.signal(sig)

    def footprint(self) -> tuple[int, int | None]:
        if self.process.poll() is not None:
            return 0, None
        return self.process.footprint(memory.shared_nvml())


def node_sees(path: str, fingerprint: str) -> str | None:
    """None when this node reads the same file at `path`, else why not (a task's body)."""
    try:
        faults.maybe_fail("node_read", path)  # tests: a node without the shared mount
        found = content_fingerprint(Path(path))
    except FileNotFoundError:
        return f"cannot read {path}"
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror or exc})"
    return None if found == fingerprint else f"sees another file at {path}"
