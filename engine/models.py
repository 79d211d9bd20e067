"""The model manager: load lazily, keep loaded across jobs, unload on demand.

Only the engine thread calls it. Unloading drops every reference we hold, collects, and
cleans the device, then reports what came back, so the user sees the bytes returned.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import memory
from .events import Event, LoadedModel, LogEmitted, ModelLoaded, ModelUnloaded

log = logging.getLogger("subq.engine")
WHISPER = "whisper"
TRANSLATION = "translation"

# Parameter bytes in fp32, to judge whether a model fits before loading it.
WHISPER_BYTES = {
    "tiny": 151e6,
    "base": 290e6,
    "small": 967e6,
    "medium": 3.06e9,
    "large": 6.17e9,
    "turbo": 3.24e9,
}
HEADROOM = 1.25  # activations, decoding caches and allocator slack on top of the weights


def kinds_of(kind: str) -> set[str]:
    """The model kinds an unload order names: one, or "all"."""
    return {WHISPER, TRANSLATION} if kind == "all" else {kind}


class NeedsMemory(Exception):
    def __init__(self, needed: int, free: int) -> None:
        super().__init__(
            f"waiting for GPU memory: needs {fmt_bytes(needed)}, free {fmt_bytes(free)}"
        )
        self.needed = needed
        self.free = free


@dataclass
class Loaded:
    kind: str
    name: str
    device: str
    model: Any
    bytes: int
    loaded_at: float
    cuda_delta: int | None = None


class ModelManager:
    def __init__(
        self,
        publish: Callable[[Event], None],
        nvml: Callable[[], memory.Nvml | None] = lambda: None,
    ) -> None:
        self._publish = publish
        self._nvml = nvml
        self._models: dict[tuple[str, str, str], Loaded] = {}
        self._snapshot: tuple[LoadedModel, ...] = ()
        self.load_counts: collections.Counter[str] = collections.Counter()
        self.pending: set[str] = set()  # unloads asked for while a stage ran
        self._keep_alive_deadline: float | None = None

    # -- queries ---------------------------------------------------------------------
    def loaded(self) -> list[Loaded]:
        return list(self._models.values())

    def snapshot(self) -> tuple[LoadedModel, ...]:
        """Safe from any thread: a tuple rebuilt on every load and unload, swapped whole."""
        return self._snapshot

    def _changed(self) -> None:
        self._snapshot = tuple(
            LoadedModel(m.kind, m.name, m.device, m.bytes) for m in self._models.values()
        )

    def names(self) -> tuple[str, ...]:
        return tuple(f"{m.kind}:{m.name}" for m in self._models.values())

    def is_loaded(self, kind: str) -> bool:
        return any(m.kind == kind for m in self._models.values())

    # -- loading ---------------------------------------------------------------------
    def whisper(
        self, name: str, device: str, *, backend: str = "whisper", ignore_budget: bool = False
    ) -> Any:
        from .asr import load_backend

        label = name if backend == "whisper" else f"{name} ({backend})"
        return self._get(
            WHISPER,
            label,
            device,
            lambda: load_backend(backend, name, device),
            estimate=_whisper_estimate(name),
            ignore_budget=ignore_budget,
        )

    def translator(self, name: str, device: str, *, ignore_budget: bool = False) -> Any:
        from .translate import load_translator

        return self._get(
            TRANSLATION,
            name,
            device,
            lambda: load_translator(name, device),
            estimate=int(310e6),
            ignore_budget=ignore_budget,
        )

    def _get(
        self,
        kind: str,
        name: str,
        device: str,
        load: Callable[[], Any],
        *,
        estimate: int,
        ignore_budget: bool,
    ) -> Any:
        key = (kind, name, device)
        if key in self._models:
            self._publish(
                LogEmitted(
                    level="info", message=f"reusing {kind} model {name} (loaded once for the batch)"
                )
            )
            return self._models[key].model
        # One model of a kind at a time: a new whisper model replaces the old one.
        for other in [m for m in self._models.values() if m.kind == kind and m.name != name]:
            self._unload_one(other, "replaced by " + name)
        if not ignore_budget:
            self._make_room(kind, device, int(estimate * HEADROOM))
        before = memory.torch_allocated(device)
        started = time.perf_counter()
        model = load()
        seconds = time.perf_counter() - started
        size = _footprint(kind, model)
        after = memory.torch_allocated(device)
        delta = after - before if after is not None and before is not None else None
        self._models[key] = Loaded(kind, name, device, model, size, time.time(), delta)
        self._changed()
        self.load_counts[kind] += 1
        self._publish(
            ModelLoaded(
                kind=kind,
                name=name,
                device=device,
                bytes=size,
                seconds=seconds,
                cuda_allocated_delta=delta,
            )
        )
        return model

    def _make_room(self, kind: str, device: str, needed: int) -> None:
        """Memory-budget policy: unload the other model before failing for want of room."""
        free = memory.free_device_bytes(device, self._nvml())
        if free is None or free >= needed:
            return
        for other in [m for m in self._models.values() if m.kind != kind]:
            self._publish(
                LogEmitted(
                    level="info",
                    message=f"memory budget: unloading {other.kind} model {other.name} to make "
                    f"room for {kind} ({fmt_bytes(needed)} needed, {fmt_bytes(free)} free)",
                )
            )
            self._unload_one(other, "memory budget")
            free = memory.free_device_bytes(device, self._nvml())
            if free is None or free >= needed:
                return
        raise NeedsMemory(needed, free or 0)

    # -- unloading -------------------------------------------------------------------
    def request_unload(self, kind: str) -> None:
        """Mark `kind` ("all" for both) to unload at the next `apply_pending`."""
        self.pending |= kinds_of(kind)

    def apply_pending(self) -> bool:
        """Unload what was asked for; False when nothing was pending."""
        if not self.pending:
            return False
        kinds, self.pending = self.pending, set()
        freed: list[ModelUnloaded] = []
        for kind in sorted(kinds):
            freed += self.unload(kind, reason="requested")
        if not freed:
            message = "no model was loaded; nothing to unload"
            log.info(message)
            self._publish(LogEmitted(level="info", message=message))
        return True

    def keep_alive(self, idle: bool, keep: float) -> bool:
        """Called while the engine idles: unload everything once `keep` seconds have passed
        with nothing to do (never if `keep` < 0). True when it just unloaded."""
        if not self._models or not idle:
            self._keep_alive_deadline = None
            return False
        if keep < 0:
            return False
        now = time.monotonic()
        if self._keep_alive_deadline is None:
            self._keep_alive_deadline = now + keep
        if now < self._keep_alive_deadline:
            return False
        self._keep_alive_deadline = None
        self.unload("all", reason=f"keep-alive {keep:g} s expired")
        return True

    def busy(self) -> None:
        """A job starts: the keep-alive countdown starts again when the queue next drains."""
        self._keep_alive_deadline = None

    def unload(self, kind: str | None = None, reason: str = "requested") -> list[ModelUnloaded]:
        """Unload one kind (or all); returns what each unload gave back."""
        return [
            self._unload_one(m, reason)
            for m in list(self._models.values())
            if kind in (None, "all", m.kind)
        ]

    def _unload_one(self, loaded: Loaded, reason: str) -> ModelUnloaded:
        device = loaded.device
        rss_before = memory.rss_bytes()
        reserved_before = memory.torch_reserved(device)
        nvml = self._nvml()
        uuid = _device_uuid(device)
        nvml_before = nvml.used_by_uuid(uuid) if nvml and uuid else None
        del self._models[(loaded.kind, loaded.name, device)]
        self._changed()
        _drop_caches(loaded.model)
        loaded.model = None
        memory.clean(device)
        event = ModelUnloaded(
            kind=loaded.kind,
            name=loaded.name,
            device=device,
            bytes=loaded.bytes,
            reason=reason,
            rss_before=rss_before,
            rss_after=memory.rss_bytes(),
            reserved_before=reserved_before,
            reserved_after=memory.torch_reserved(device),
            nvml_used_before=nvml_before,
            nvml_used_after=nvml.used_by_uuid(uuid) if nvml and uuid else None,
        )
        self._publish(event)
        return event


def _footprint(kind: str, model: Any) -> int:
    if kind == WHISPER:
        from .asr import footprint

        return footprint(model)
    return memory.model_bytes(getattr(model, "model", model))


def _drop_caches(model: Any) -> None:
    """Whisper keeps kv-cache hooks and alignment heads; clear what holds tensors."""
    inner = getattr(model, "model", model)
    for attr in ("alignment_heads",):
        if hasattr(inner, attr):
            with contextlib.suppress(AttributeError):
                delattr(inner, attr)
    for module in getattr(inner, "modules", lambda: [])():
        module._forward_hooks.clear()


def _device_uuid(device: str) -> str | None:
    if not device.startswith("cuda") or not memory.cuda_available():
        return None
    import torch

    try:
        props = torch.cuda.get_device_properties(torch.device(device))
        return "GPU-" + str(props.uuid)
    except Exception:
        return None


def _whisper_estimate(name: str) -> int:
    from .asr import model_path

    path = model_path(name)
    if path is not None and path.is_file():
        return path.stat().st_size * 2  # checkpoints are often fp16; loaded as fp32
    base = name.removesuffix(".en").split("-")[0]
    return int(WHISPER_BYTES.get(base, WHISPER_BYTES["large"]))


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def describe_unload(event: ModelUnloaded) -> str:
    """One line for a log: what was unloaded and how much memory came back."""
    where = "GPU" if event.device.startswith("cuda") else "RAM"
    caveat = " (the CUDA context stays until subq exits)" if where == "GPU" else ""
    return (
        f"unloaded {event.kind} model {event.name} ({fmt_bytes(event.bytes)}): "
        f"{fmt_bytes(event.returned)} of {where} returned{caveat}"
    )
