"""Where memory is: process RSS, NVML per GPU (every process on the card), torch's allocator.

A daemon thread samples about twice a second into a ring buffer of the last ten minutes and
publishes each sample as a `MemorySampled` event. Like nvitop, a field that cannot be read is
None ("not available"), never an exception: a machine without an NVIDIA driver gets one
"no GPU" note and RAM figures.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import gc
import os
import threading
from collections.abc import Callable
from typing import Any

import psutil

from . import faults, procs
from .events import GpuProcess, GpuSample, MemorySampled

CONTEXT_NOTE = (
    "models run in worker processes, one per device; Release GPU ends them, and their CUDA "
    "contexts (a few hundred MB per GPU) go with them"
)


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def malloc_trim() -> None:
    """Hand freed heap pages back to the OS (glibc); without it CPU unloads barely show."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def model_bytes(model: Any) -> int:
    """Bytes of parameters and buffers: what unloading the model gives back."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def torch_loaded() -> bool:
    import sys

    return "torch" in sys.modules


def cuda_available() -> bool:
    if not torch_loaded():
        return False
    import torch

    return torch.cuda.is_available()


def clean(device: str) -> None:
    """gc, and on CUDA synchronize + empty_cache; on CPU trim the heap."""
    gc.collect()
    if device.startswith("cuda") and cuda_available():
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    malloc_trim()


def tree_rss(pid: int | None) -> int:
    """Resident bytes of process `pid` and its children (a worker's tree); 0 if gone."""
    if pid is None:
        return 0
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for one in procs:
        with contextlib.suppress(psutil.Error):
            total += one.memory_info().rss
    return total


NO_NVML = {  # why NVML would not start, in the words of someone who never heard of it
    "NVMLError_LibraryNotFound": "no NVIDIA driver found",
    "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded",
    "NVMLError_NoPermission": "no permission to use the NVIDIA driver",
    "ModuleNotFoundError": "pynvml is not installed",
}


class Nvml:
    """A thin, failure-tolerant view of NVML; `ok` is False without a driver."""

    def __init__(self) -> None:
        self.ok = False
        self.reason = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nv = pynvml
            self.ok = True
        except Exception as exc:  # no library, no driver, no device: all mean "no GPU"
            self.reason = "no GPU: " + NO_NVML.get(
                type(exc).__name__, f"the NVIDIA driver did not answer ({type(exc).__name__})"
            )

    def count(self) -> int:
        return self._call(lambda nv: nv.nvmlDeviceGetCount(), 0) if self.ok else 0

    def _call(self, fn: Callable[[Any], Any], default: Any = None) -> Any:
        try:
            return fn(self._nv)
        except Exception:
            return default

    def free_bytes(self, index: int) -> int | None:
        if not self.ok:
            return None
        h = self._call(lambda nv: nv.nvmlDeviceGetHandleByIndex(index))
        mem = self._call(lambda nv: nv.nvmlDeviceGetMemoryInfo(h)) if h else None
        return int(mem.free) if mem else None

    def uuid(self, index: int) -> str | None:
        h = self._call(lambda nv: nv.nvmlDeviceGetHandleByIndex(index))
        uuid = self._call(lambda nv: nv.nvmlDeviceGetUUID(h)) if h else None
        return uuid.decode() if isinstance(uuid, bytes) else uuid

    def processes(self, index: int) -> list[Any]:
        h = self._call(lambda nv: nv.nvmlDeviceGetHandleByIndex(index))
        if h is None:
            return []
        return self._call(lambda nv: nv.nvmlDeviceGetComputeRunningProcesses(h), []) or []

    def used_by_uuid(self, uuid: str) -> int | None:
        if not self.ok:
            return None
        h = self._call(lambda nv: nv.nvmlDeviceGetHandleByUUID(uuid))
        mem = self._call(lambda nv: nv.nvmlDeviceGetMemoryInfo(h)) if h else None
        return int(mem.used) if mem else None

    def sample(self, index: int, ours: set[int] | None = None) -> GpuSample:
        """One GPU; `ours`: pids that count as this app (its workers) besides itself."""
        nv = self._nv
        h = self._call(lambda nv: nv.nvmlDeviceGetHandleByIndex(index))
        name = self._call(lambda nv: nv.nvmlDeviceGetName(h), "GPU")
        uuid = self._call(lambda nv: nv.nvmlDeviceGetUUID(h))
        mem = self._call(lambda nv: nv.nvmlDeviceGetMemoryInfo(h))
        util = self._call(lambda nv: nv.nvmlDeviceGetUtilizationRates(h))
        procs = self._call(lambda nv: nv.nvmlDeviceGetComputeRunningProcesses(h), []) or []
        me = {os.getpid(), *(ours or ())}
        mine = None
        others = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            if p.pid in me:
                mine = (mine or 0) + (used or 0)
            else:
                pname = self._call(lambda nv, pid=p.pid: psutil.Process(pid).name(), "?")
                others.append(GpuProcess(pid=p.pid, name=pname, bytes=used))
        del nv
        return GpuSample(
            index=index,
            name=str(name),
            uuid=uuid,
            total=getattr(mem, "total", None),
            used=getattr(mem, "used", None),
            free=getattr(mem, "free", None),
            utilization=getattr(util, "gpu", None),
            this_process=mine,
            processes=tuple(others),
        )


def take_sample(nvml: Nvml, ours: set[int] | None = None) -> MemorySampled:
    vm = psutil.virtual_memory()
    gpus = []
    for i in range(nvml.count()):
        gpus.append(nvml.sample(i, ours))
    note = nvml.reason if not nvml.ok else (CONTEXT_NOTE if gpus else "no GPU found by NVML")
    return MemorySampled(
        rss_bytes=rss_bytes(),
        ram_total=vm.total,
        ram_available=vm.available,
        gpus=tuple(gpus),
        gpu_note=note,
    )


class MemorySampler:
    """Samples every `interval` seconds on its own daemon thread; keeps ~10 minutes."""

    def __init__(
        self,
        publish: Callable[[MemorySampled], None],
        interval: float = 0.5,
        history_seconds: float = 600.0,
        ours: Callable[[], set[int]] = set,
    ) -> None:
        self._publish = publish
        self._ours = ours  # the workers' pids: their GPU memory is this app's
        self.interval = interval
        self.history: collections.deque[MemorySampled] = collections.deque(
            maxlen=int(history_seconds / interval)
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.nvml: Nvml | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="subq-memory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    @property
    def latest(self) -> MemorySampled | None:
        return self.history[-1] if self.history else None

    def _run(self) -> None:
        self.nvml = Nvml()
        while not self._stop.is_set():
            try:
                sample = take_sample(self.nvml, self._ours())
            except Exception:  # a probe must never take the engine down
                sample = None
            if sample is not None:
                self.history.append(sample)
                self._publish(sample)
            self._stop.wait(self.interval)


def free_device_bytes(device: str, nvml: Nvml | None) -> int | None:
    """Free memory where a model is about to load, from NVML (an injected reading wins, for
    tests); None on the CPU or without NVML. No CUDA context is made in this process."""
    injected = faults.injected_free_bytes()
    if injected is not None:
        return injected
    nvml = nvml or shared_nvml()
    index = nvml_index(device, nvml)
    return None if index is None else nvml.free_bytes(index)


GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # CUDA, ROCm, WSL


_shared: list[Nvml] = []


def shared_nvml() -> Nvml:
    """One NVML view for callers that have none (no memory sampler running)."""
    if not _shared:
        _shared.append(Nvml())
    return _shared[0]


def visible_gpus(nvml: Nvml | None) -> list[int]:
    """NVML indices of the GPUs CUDA numbers 0, 1, ... (CUDA_VISIBLE_DEVICES respected)."""
    nvml = nvml or shared_nvml()
    if not nvml.ok:
        return []
    count = nvml.count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    out = []
    for entry in (v.strip() for v in visible.split(",")):
        if entry.isdigit() and int(entry) < count:
            out.append(int(entry))
        elif entry.startswith(("GPU-", "MIG-")):
            found = [i for i in range(count) if nvml.uuid(i) == entry]
            if not found:
                break
            out += found
        else:
            break  # CUDA stops at the first entry it cannot use
    return out


def nvml_index(device: str, nvml: Nvml | None) -> int | None:
    """NVML's index for a CUDA device name ("cuda:1"), None for the CPU or an unknown GPU."""
    kind, _, index = device.partition(":")
    if kind != "cuda" or not (index or "0").isdigit():
        return None
    gpus = visible_gpus(nvml)
    number = int(index or 0)
    return gpus[number] if number < len(gpus) else None


def pick_cuda_device(nvml: Nvml | None = None) -> str:
    """`auto`: the visible CUDA device with the most free memory (NVML), else "cpu".

    Only NVML is asked: this process never imports torch nor makes a CUDA context."""
    nvml = nvml or shared_nvml()
    gpus = visible_gpus(nvml)
    if not gpus:
        return "cpu"
    free = [nvml.free_bytes(i) or 0 for i in gpus]
    return f"cuda:{free.index(max(free))}"


CPU_WORKERS = min(2, procs.usable_cpus())  # the cores this process may use, not the machine's


def device_entries(device: str, nvml: Nvml | None = None) -> list[str]:
    """The worker entries a --device value names: "cuda:0,cuda:1", "cpu,cpu", "all" (every
    visible GPU; the CPU if none), "auto" (the GPU with most free memory, else the CPU)."""
    entries = [e.strip() for e in device.split(",") if e.strip()] or ["auto"]
    out: list[str] = []
    for entry in entries:
        if entry == "all":
            out += [f"cuda:{i}" for i in range(len(visible_gpus(nvml)))] or ["cpu"]
        elif entry == "auto":
            picked = pick_cuda_device(nvml)
            # Without a GPU, two workers of one thread each: on 2 cores that batch ran in
            # 0.58x the time of one worker with two threads (docs/benchmarks.md figure 10).
            out += [picked] if picked != "cpu" else ["cpu"] * CPU_WORKERS
        else:
            out.append("cuda:0" if entry == "cuda" else entry)
    return out


def gpu_bytes_of(pids: set[int], nvml: Nvml | None) -> int | None:
    """What NVML lists for these processes on every GPU; None where it cannot tell."""
    if nvml is None or not nvml.ok or not pids:
        return None
    total, seen = 0, False
    for i in range(nvml.count()):
        for proc in nvml.processes(i):
            if proc.pid in pids:
                seen = True
                total += getattr(proc, "usedGpuMemory", None) or 0
    return total if seen else None


def device_problem(device: str, nvml: Nvml | None = None) -> str | None:
    """None when `device` can be used here, else one line naming it and what does exist.

    Checked when a command starts, through NVML (no torch, no CUDA context), so a typo or
    a GPU this machine lacks is caught before any work rather than blamed on a model later.
    """
    if "," in device:
        problems = [device_problem(e.strip(), nvml) for e in device.split(",") if e.strip()]
        return next((p for p in problems if p), None)
    if device in ("auto", "cpu", "all"):
        return None
    nvml = nvml or Nvml()
    gpus = nvml.count() if nvml.ok else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # CUDA numbers only the visible ones, from 0
        gpus = min(gpus, len([v for v in visible.split(",") if v.strip()]))
    have = ", ".join(["cpu", *(f"cuda:{i}" for i in range(gpus))])
    kind, colon, index = device.partition(":")
    if kind == "cuda" and (index.isdigit() or not colon):
        if int(index or 0) < gpus:
            return None
        return f"--device {device}: no such device; this machine has: {have}"
    return (
        f"--device {device}: not a device name (auto, all, cpu, cuda or cuda:N, or a list "
        "such as cuda:0,cuda:1 or cpu,cpu); "
        f"this machine has: {have}"
    )
