"""Where a worker process runs: on this machine (a child process) or on a cluster's node.

The engine drives every worker through one handle (worker.py: numbered calls, the watchdog,
Stop's grace); what differs is only how the process is started, signalled and waited for,
and how its memory is read. That difference is a `WorkerHost` and the `HostedProcess` it
returns: `LocalHost` here, `RayHost` in cluster.py. The handle holds one end of a socket
pair whichever it is: a local worker holds the other end itself, a Ray actor's relay writes
the worker's frames into it from the node.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from . import memory
from .private import open_private_log
from .worker_env import DEFAULT_LOG, WorkerError, log_target, worker_env


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is started with, wherever it runs (the host adds --fd and --parent)."""

    device: str = "cpu"
    threads: int | None = None
    gpu_uuid: str | None = None
    log: str | Path | None = DEFAULT_LOG
    preload: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    pdeathsig: bool = True

    def argv(self, fd: int, parent: int, local_device: str, log: Path | None) -> list[str]:
        argv = [sys.executable, "-P", "-m", "subq.engine.worker_main", "--fd", str(fd)]
        argv += ["--parent", str(parent), "--device", self.device, "--local", local_device]
        argv += ["--spawned", repr(time.time())]
        argv += ["--log", str(log)] if log else []
        argv += [f"--preload={what}" for what in self.preload]
        return argv + ([] if self.pdeathsig else ["--no-pdeathsig"])


class HostedProcess(Protocol):
    """A started worker process as its handle sees it (subprocess.Popen's shape)."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code; subprocess.TimeoutExpired if it has not ended by `timeout`."""
        ...

    def signal(self, sig: int) -> None: ...

    def sentinel(self) -> int | None:
        """A file descriptor that becomes readable when it ends; None: poll it instead."""
        ...

    def footprint(self, nvml: memory.Nvml | None) -> tuple[int, int | None]:
        """(RSS of its process tree, GPU bytes NVML lists for it or None), where it runs."""
        ...


class WorkerHost(Protocol):
    def launch(self, spec: WorkerSpec) -> tuple[HostedProcess, Connection, str, Path | None]:
        """Start a worker: (its process, the engine's end of its channel, the device's
        name inside it, its log). WorkerError if it cannot be started."""
        ...


class LocalProcess:
    """A worker that is a child of this process, in its own session."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:  # type: ignore[override]
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def signal(self, sig: int) -> None:
        if self.popen.returncode is not None:
            return  # reaped: its pid (and group) may belong to another process by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # its own session: the group is the worker (and children)

    def sentinel(self) -> int | None:
        with contextlib.suppress(AttributeError, OSError):
            return os.pidfd_open(self.pid)
        return None

    def footprint(self, nvml: memory.Nvml | None) -> tuple[int, int | None]:
        return memory.tree_rss(self.pid), memory.gpu_bytes_of({self.pid}, nvml)


class LocalHost:
    """Workers as child processes of the engine (the default host)."""

    def launch(self, spec: WorkerSpec) -> tuple[HostedProcess, Connection, str, Path | None]:
        env, local = worker_env(
            spec.device, spec.threads, gpu_uuid=spec.gpu_uuid, extra=spec.extra_env
        )
        log = log_target(spec.log)
        popen, conn = _start_child(spec, env, local, log)
        return LocalProcess(popen), conn, local, log


def _start_child(
    spec: WorkerSpec, env: dict[str, str], local: str, log: Path | None
) -> tuple[subprocess.Popen[bytes], Connection]:
    """Spawn `python -m subq.engine.worker_main` as this process's child, with one end of a
    new socket pair; the other end, as a Connection, is returned with it."""
    ours, theirs = socket.socketpair()
    out: Any = subprocess.DEVNULL
    try:
        if log is not None:
            with contextlib.suppress(OSError):
                out = open_private_log(log)  # closed below
        popen = subprocess.Popen(
            spec.argv(theirs.fileno(), os.getpid(), local, log),
            env=env,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            close_fds=True,
        )
    except OSError as exc:
        ours.close()
        raise WorkerError(f"cannot start a worker on {spec.device}: {exc}") from None
    finally:
        theirs.close()
        if out is not subprocess.DEVNULL:
            out.close()
    return popen, Connection(ours.detach())


LOCAL = LocalHost()
