"""Workers on a Ray cluster's nodes, driven like local ones (`subq run --cluster ADDRESS`).

Why Ray: labs that outgrow one GPU server have often joined theirs in a Ray cluster
already. What stays here: the queue, the state file, the checkpoints and the outputs are on
the machine where subq runs (SQLite must not live on a network file system); the nodes
read the inputs by their paths (shared storage) and only the protocol's small messages
cross the network, never audio.

One worker per GPU of the cluster, one CPU worker (reserving the node's CPUs) per node
without one; each is a `WorkerActor` (cluster_actor.py) pinned to its node, which runs
subq's own worker process there. `RayHost` gives the engine's worker handle (worker.py) a
socket pair like a local worker's: two relay threads per worker carry frames between it
and the actor, so the handle's numbered calls, watchdog and Stop work unchanged, and a dead
actor or node ends the channel as a dead process does (the job resumes from its last
checkpoint on another worker). Ray's own retries are off (`max_restarts=0`,
`max_task_retries=0`): subq's checkpoint and requeue are the recovery, and a restarted
actor would only load its models again.

Ray is optional (`pip install 'subq[ray]'`) and imported only here, only when a cluster is
asked for. Ownership: `Cluster` is made and closed by the engine thread, which alone reads
the live nodes again (`entries`); its tables (every place seen, the live entries) are
guarded by `_lock` (lanes look places up, and drop one whose worker cannot start); each
`RayProcess` is owned by its worker handle, and its two relay threads write only its
channel end, `returncode` (once) and `_ended`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from . import memory
from .worker_env import WorkerError
from .worker_host import HostedProcess, WorkerSpec

log = logging.getLogger("subq.engine")
GPU_RESOURCE = "GPU"  # SUBQ_CLUSTER_GPU_RESOURCE names another (tests: a stand-in resource)
OBJECT_STORE_BYTES = 256 * 1024 * 1024  # `--cluster local`: frames are small, no audio
MEMORY_THRESHOLD = 0.95  # `--cluster local`: Ray's default, set so it is a decision
NODES_SECONDS = 2.0  # how often the list of live nodes is read again
CHECK_SECONDS = 60.0  # how long a node has to confirm it sees an input
HEAD_SECONDS = 2.0  # how long the head's port has to answer before the cluster is gone
NODE_LOG = "~/.local/state/subq/worker.log"  # each node's worker log, on that node
INSTALL_HINT = "--cluster needs Ray: pip install 'subq[ray]'"


class ClusterError(Exception):
    """The cluster cannot be reached or used; the message is one line for the user."""


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    return ray


def cluster_problem(address: str) -> str | None:
    """Checked when a command starts: one line if --cluster cannot work here (no Ray)."""
    if not address:
        return None
    try:
        ray_module()
    except ClusterError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Place:
    """Where one cluster worker runs: its node, and what it reserves there."""

    node_id: str
    node: str  # the name shown: the host, with the node id's start where hosts repeat
    gpu: bool
    cpus: int


class Cluster:
    """A connection to a Ray cluster and its worker entries ("gpu-3/gpu0", "gpu-4/cpu")."""

    def __init__(self, address: str) -> None:
        self.ray = ray_module()
        self.address = address
        self.resource = os.environ.get("SUBQ_CLUSTER_GPU_RESOURCE", GPU_RESOURCE)
        try:
            self._connect(address)
        except ClusterError:
            raise
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"cannot reach the Ray cluster at {address}: {first}") from None
        self.down = threading.Event()  # its head is gone: nothing of Ray is waited on again
        self._head = _head_address(self.ray)
        self._lock = threading.Lock()  # the place table
        self.places: dict[str, Place] = {}  # every entry seen (a worker may outlive its node)
        self._alive: list[str] = []
        self._read = 0.0
        # Ray's wrappers of subq's actor and check, made once (each wrapping exports anew)
        from .cluster_actor import WorkerActor, node_sees

        self.actor_class = self.ray.remote(max_concurrency=4, max_restarts=0, max_task_retries=0)(
            WorkerActor
        )
        self._check = self.ray.remote(num_cpus=0, max_retries=0)(node_sees)
        try:
            self.entries()
        except ClusterError:
            raise ClusterError(
                f"the Ray cluster at {address} has no node with CPUs or GPUs"
            ) from None

    def _connect(self, address: str) -> None:
        # Ray's own notices (token auth, no SIGTERM handler off the main thread) are not the
        # user's business on subq's output; its errors still are
        logging.getLogger("ray").setLevel(logging.ERROR)
        options: dict[str, Any] = {
            "namespace": "subq",
            "logging_level": logging.ERROR,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address == "local":  # a throwaway Ray on this machine, for trying it
            options |= {
                "include_dashboard": False,
                # not 30 % of RAM: only the protocol's small frames go through it
                "object_store_memory": OBJECT_STORE_BYTES,
                # Ray's monitor ends a worker when the machine passes this share of its
                # memory; subq then resumes that file elsewhere from its last window
                "_system_config": {"memory_usage_threshold": MEMORY_THRESHOLD},
            }
            self.ray.init(**options)
        else:
            self.ray.init(address=None if address == "auto" else address, **options)

    def _places(self) -> dict[str, Place]:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        hosts = [n.get("NodeManagerHostname") or n.get("NodeManagerAddress") for n in nodes]
        places: dict[str, Place] = {}
        for node, host in zip(nodes, hosts, strict=True):
            res = node.get("Resources", {})
            name = host if hosts.count(host) == 1 else f"{host}-{node['NodeID'][:6]}"
            gpus, cpus = int(res.get(self.resource, 0)), int(res.get("CPU", 0))
            slot = "gpu" if self.resource == GPU_RESOURCE else self.resource.lower()
            for i in range(gpus):
                places[f"{name}/{slot}{i}"] = Place(node["NodeID"], name, True, cpus)
            if not gpus and cpus:
                places[f"{name}/cpu"] = Place(node["NodeID"], name, False, cpus)
        return places

    def entries(self) -> list[str]:
        """The entries of the nodes alive now (read again every NODES_SECONDS): a node that
        left takes no more files, one that joined gets its share."""
        if time.monotonic() - self._read >= NODES_SECONDS:
            if not self.head_up():
                self._gone()
            with contextlib.suppress(Exception):  # not read: keep the last list
                places = self._places()
                with self._lock:
                    self.places.update(places)
                    self._alive = list(places)
            self._read = time.monotonic()
        with self._lock:
            alive = list(self._alive)
        if not alive:  # never this machine instead: the user asked for the cluster
            self._gone()
        return alive

    def lost(self, entry: str) -> None:
        """A worker could not start at `entry`: no more files go there until the next read
        of the live nodes finds its node again."""
        with self._lock:
            self._alive = [e for e in self._alive if e != entry]
            self._read = time.monotonic()

    def check_reachable(self) -> None:
        """ClusterError when no node of the cluster is alive (or its head is gone)."""
        try:
            alive = self._places() if self.head_up() else {}
        except Exception:
            alive = {}
        if not alive:
            self._gone()

    def head_up(self) -> bool:
        """Whether the head's GCS port answers, asked first and in at most HEAD_SECONDS: with
        the head gone, Ray's own calls block for a minute and then end this process."""
        if self.down.is_set():
            return False
        if self._head is None:
            return True  # a client (ray://) connection: Ray's calls say it themselves
        try:
            socket.create_connection(self._head, timeout=HEAD_SECONDS).close()
        except OSError:
            self.down.set()
            return False
        return True

    def _gone(self) -> None:
        self.down.set()
        raise ClusterError(
            f"the Ray cluster at {self.address} is gone (no live node): every file keeps "
            "its last window"
        )

    def owns(self, entry: str) -> bool:
        with self._lock:
            return entry in self.places

    def node_of(self, entry: str) -> str:
        with self._lock:
            return self.places[entry].node_id

    def alive_nodes(self) -> set[str]:
        with self._lock:
            return {self.places[entry].node_id for entry in self._alive}

    def host(self, entry: str) -> RayHost:
        with self._lock:
            return RayHost(self, self.places[entry])

    def problem(self, entry: str, path: str, fingerprint: str) -> str | None:
        """None when the entry's node reads the file of this `fingerprint` at `path`; else
        one line."""
        with self._lock:
            place = self.places[entry]
        if not self.head_up():
            return None  # the cluster is gone: the worker's start says so, and stops the batch
        try:
            why = self.ray.get(
                self._check.options(scheduling_strategy=self._on(place)).remote(path, fingerprint),
                timeout=CHECK_SECONDS,
            )
        except Exception as exc:  # the node is going: its worker's death will say so
            log.info("node %s: check of %s failed (%s)", place.node, path, type(exc).__name__)
            return None
        if why is None:
            return None
        return f"node {place.node} {why}: not on shared storage?"

    def _on(self, place: Place) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(place.node_id, soft=False)

    def close(self) -> None:
        if self.down.is_set():  # nothing to say goodbye to: Ray's shutdown (here, and the
            # one it registered for the interpreter's exit) would wait on the head a minute
            with contextlib.suppress(Exception):
                atexit.unregister(self.ray._private.worker.shutdown)
            return
        with contextlib.suppress(Exception):
            self.ray.shutdown()


class RayHost:
    """Starts a worker as an actor on one place of the cluster (worker_host.WorkerHost)."""

    def __init__(self, cluster: Cluster, place: Place) -> None:
        self.cluster, self.place = cluster, place

    def launch(self, spec: WorkerSpec) -> tuple[HostedProcess, Connection, str, Path | None]:
        ray, place = self.cluster.ray, self.place
        if not self.cluster.head_up():  # Ray would wait on the head for a minute
            raise WorkerError(f"cannot start a worker on {place.node}: the cluster is gone")
        gpu = place.gpu and self.cluster.resource == GPU_RESOURCE
        reserve: dict[str, Any] = {"num_cpus": 1 if place.gpu else place.cpus}
        if gpu:
            reserve["num_gpus"] = 1
        elif place.gpu:
            reserve["resources"] = {self.cluster.resource: 1}
        # spec.device is "cuda:0" or "cpu" (pool.real_device): the worker's own, on its node,
        # where its environment and log are the node's
        spec = dataclasses.replace(
            spec,
            threads=None if gpu else 1 if place.gpu else place.cpus,
            gpu_uuid=None,
            log=NODE_LOG,
            extra_env={**spec.extra_env, **_passed_env()},
        )
        try:
            actor = self.cluster.actor_class.options(
                scheduling_strategy=self.cluster._on(place), **reserve
            ).remote(spec)
            pid = ray.get(actor.pid.remote(), timeout=120)
        except Exception as exc:
            raise WorkerError(f"cannot start a worker on {place.node}: {exc}") from None
        process = RayProcess(ray, actor, pid, self.cluster.down)
        return process, process.engine_end, spec.device, None


def _head_address(ray: Any) -> tuple[str, int] | None:
    """(host, port) of the cluster's GCS, or None where this connection cannot tell."""
    try:
        host, _, port = ray.get_runtime_context().gcs_address.rpartition(":")
        return host, int(port)
    except Exception:
        return None


def _passed_env() -> dict[str, str]:
    """What a node's worker takes from the user's environment: subq's own switches."""
    return {k: v for k, v in os.environ.items() if k.startswith("SUBQ_") and "THREADS" not in k}


class RayProcess:
    """A worker on a node, as the engine's handle sees it (worker_host.HostedProcess)."""

    def __init__(self, ray: Any, actor: Any, pid: int, down: threading.Event) -> None:
        self.ray, self.actor, self.pid = ray, actor, pid
        self._down = down  # the cluster is gone: its actors are too; nothing is waited on
        self.returncode: int | None = None
        self._ended = threading.Event()
        ours, theirs = socket.socketpair()
        self.engine_end = Connection(ours.detach())
        self._relay_end = Connection(theirs.detach())
        for relay in (self._downlink, self._uplink):
            threading.Thread(target=relay, daemon=True, name=f"subq-ray{relay.__name__}").start()

    def _downlink(self) -> None:
        """The worker's frames into the engine's channel; its exit code (or a death) last."""
        code = -signal.SIGKILL
        try:
            for ref in self.actor.replies.options(num_returns="streaming").remote():
                item = self.ray.get(ref)
                if isinstance(item, int):
                    code = item
                    break
                self._relay_end.send_bytes(item)
        except Exception as exc:  # the actor or its node is gone: a death, as SIGKILL
            log.info("cluster worker %d: relay ended (%s)", self.pid, type(exc).__name__)
        finally:
            self.returncode = code
            self._ended.set()
            with contextlib.suppress(OSError):
                self._relay_end.close()  # the engine reads end-of-channel, then poll()
            with contextlib.suppress(Exception):
                self.ray.kill(self.actor)  # the actor's reservation (a GPU) goes back

    def _uplink(self) -> None:
        """The engine's frames to the worker, in order (each delivered before the next)."""
        try:
            while not self._ended.is_set():
                frame = self._relay_end.recv_bytes()
                self.ray.get(self.actor.send.remote(frame))
        except Exception:
            return  # the channel closed (the worker ended) or the actor is gone

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self._down.is_set():
            self.returncode = -signal.SIGKILL if self.returncode is None else self.returncode
            self._ended.set()
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired("ray actor", timeout or 0)
        return self.returncode if self.returncode is not None else -signal.SIGKILL

    def signal(self, sig: int) -> None:
        if self._ended.is_set() or self._down.is_set():
            return
        if sig == signal.SIGKILL:  # the worker first (the actor may be busy), then the actor
            with contextlib.suppress(Exception):
                self.ray.get(self.actor.signal.remote(sig), timeout=5)
            with contextlib.suppress(Exception):
                self.ray.kill(self.actor)
            return
        with contextlib.suppress(Exception):
            self.actor.signal.remote(sig)

    def sentinel(self) -> int | None:
        return None  # the engine's end of the channel closes when this ends

    def footprint(self, nvml: memory.Nvml | None) -> tuple[int, int | None]:
        if self._ended.is_set() or self._down.is_set():
            return 0, None
        try:
            return tuple(self.ray.get(self.actor.footprint.remote(), timeout=5))  # type: ignore[return-value]
        except Exception:
            return 0, None
