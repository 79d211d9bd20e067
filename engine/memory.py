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

from . import faults
from .events import GpuProcess, GpuSample, MemorySampled

CONTEXT_NOTE = (
    "the CUDA context of this process (a few hundred MB per GPU) stays allocated after "
    "Release GPU until subq exits"
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


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` is PyTorch running out of device memory (torch is loaded by then)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError)


def torch_reserved(device: str) -> int | None:
    if device.startswith("cuda") and cuda_available():
        import torch

        return int(torch.cuda.memory_reserved(device))
    return None


def torch_allocated(device: str) -> int | None:
    if device.startswith("cuda") and cuda_available():
        import torch

        return int(torch.cuda.memory_allocated(device))
    return None


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
            self.reason = f"no GPU: NVML not available ({type(exc).__name__})"

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

    def used_by_uuid(self, uuid: str) -> int | None:
        if not self.ok:
            return None
        h = self._call(lambda nv: nv.nvmlDeviceGetHandleByUUID(uuid))
        mem = self._call(lambda nv: nv.nvmlDeviceGetMemoryInfo(h)) if h else None
        return int(mem.used) if mem else None

    def sample(self, index: int) -> GpuSample:
        nv = self._nv
        h = self._call(lambda nv: nv.nvmlDeviceGetHandleByIndex(index))
        name = self._call(lambda nv: nv.nvmlDeviceGetName(h), "GPU")
        uuid = self._call(lambda nv: nv.nvmlDeviceGetUUID(h))
        mem = self._call(lambda nv: nv.nvmlDeviceGetMemoryInfo(h))
        util = self._call(lambda nv: nv.nvmlDeviceGetUtilizationRates(h))
        procs = self._call(lambda nv: nv.nvmlDeviceGetComputeRunningProcesses(h), []) or []
        me = os.getpid()
        mine = None
        others = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            if p.pid == me:
                mine = used
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


def torch_stats(index: int) -> dict[str, int | None]:
    if not cuda_available():
        return {}
    import torch

    try:
        stats = torch.cuda.memory_stats(index)
    except Exception:
        return {}
    return {
        "torch_allocated": stats.get("allocated_bytes.all.current"),
        "torch_reserved": stats.get("reserved_bytes.all.current"),
        "torch_peak": stats.get("allocated_bytes.all.peak"),
        "alloc_retries": stats.get("num_alloc_retries"),
        "ooms": stats.get("num_ooms"),
    }


def take_sample(nvml: Nvml) -> MemorySampled:
    vm = psutil.virtual_memory()
    gpus = []
    for i in range(nvml.count()):
        s = nvml.sample(i)
        extra = torch_stats(i)
        if extra:
            import dataclasses

            s = dataclasses.replace(s, **extra)
        gpus.append(s)
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
    ) -> None:
        self._publish = publish
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
                sample = take_sample(self.nvml)
            except Exception:  # a probe must never take the engine down
                sample = None
            if sample is not None:
                self.history.append(sample)
                self._publish(sample)
            self._stop.wait(self.interval)


def free_device_bytes(device: str, nvml: Nvml | None) -> int | None:
    """Free memory where a model is about to load (an injected reading wins, for tests)."""
    injected = faults.injected_free_bytes()
    if injected is not None:
        return injected
    if not device.startswith("cuda") or not cuda_available():
        return None
    import torch

    index = torch.device(device).index or 0
    free, _total = torch.cuda.mem_get_info(index)
    return int(free)


GPU_DEVICE_NODES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # CUDA, ROCm, WSL


def pick_cuda_device(nvml: Nvml | None = None) -> str:
    """`auto`: the CUDA device with the most free memory, matched to NVML by UUID, else "cpu".

    Torch numbers devices after CUDA_VISIBLE_DEVICES, NVML numbers all of them; the UUID is
    the one name both share. Where plainly no GPU exists (none NVML can see, no GPU device
    node) the answer is "cpu" without importing torch: 1.4 s a CPU-only run never needs.
    """
    nvml_sees_one = nvml is not None and nvml.ok and nvml.count() > 0
    if not nvml_sees_one and not any(os.path.exists(node) for node in GPU_DEVICE_NODES):
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    count = torch.cuda.device_count()
    if count == 1:
        return "cuda:0"
    best, best_free = 0, -1
    for i in range(count):
        free = None
        if nvml and nvml.ok:
            try:
                uuid = str(torch.cuda.get_device_properties(i).uuid)
                h = nvml._nv.nvmlDeviceGetHandleByUUID(("GPU-" + uuid).encode())
                free = int(nvml._nv.nvmlDeviceGetMemoryInfo(h).free)
            except Exception:
                free = None
        if free is None:
            free = int(torch.cuda.mem_get_info(i)[0])
        if free > best_free:
            best, best_free = i, free
    return f"cuda:{best}"


def device_problem(device: str, nvml: Nvml | None = None) -> str | None:
    """None when `device` can be used here, else one line naming it and what does exist.

    Checked when a command starts, through NVML (no torch, no CUDA context), so a typo or
    a GPU this machine lacks is caught before any work rather than blamed on a model later.
    """
    if device in ("auto", "cpu"):
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
        f"--device {device}: not a device name (auto, cpu, cuda or cuda:N); "
        f"this machine has: {have}"
    )
