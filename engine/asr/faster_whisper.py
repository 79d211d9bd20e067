"""Transcription with faster-whisper (CTranslate2), stoppable between 30 s windows.

The decoding loop is our copy of the library's (faster_whisper_loop.py, which says why): it calls
`on_window` at the start of every window, silent ones included, with a checkpoint of every
finished segment and the decoder's state, and raising there stops the stage without
losing a finished window; a resume from that checkpoint continues exactly as the clean run.

The bundled tiny.en weights are already CTranslate2 files, so this backend loads them as
they are (int8 on the CPU, float16 on CUDA). CTranslate2 allocates outside torch, so the
footprint is measured from the process (RSS on the CPU, NVML on CUDA), not torch's
allocator.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import faults
from ..packaged import packaged_fix
from .base import (
    Audio,
    Checkpoint,
    ModelLoadError,
    Refill,
    SegmentHook,
    TranscribeOptions,
    Transcript,
    WindowHook,
    as_audio,
    drop_invented,
    model_path,
)
from .gaps import fill as fill_gaps

log = logging.getLogger("subq.engine")

CPU_COMPUTE_TYPE = "int8"
CUDA_COMPUTE_TYPE = "float16"


@dataclass
class CT2Model:
    """A loaded faster-whisper model and what it costs; `asr.footprint` reads the bytes."""

    model: Any  # faster_whisper.WhisperModel
    footprint_bytes: int
    device: str
    compute_type: str = ""
    path: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Free the weights now, even if something still holds a reference to this object."""
        inner = getattr(self.model, "model", None)
        with contextlib.suppress(Exception):
            if inner is not None:
                inner.unload_model()
        self.model = None


# -- loading -------------------------------------------------------------------------------


def parse_device(device: str) -> tuple[str, int]:
    """ "cpu" -> ("cpu", 0); "cuda" -> ("cuda", 0); "cuda:N" -> ("cuda", N)."""
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise ModelLoadError(f"--device {device}: use cpu, cuda or cuda:N with faster-whisper")


def resolve_model(name: str) -> str:
    """The folder (or downloadable name) faster-whisper should load for `name`."""
    from ..packaged import packaged_model_dir

    if (folder := packaged_model_dir(name)) is not None:  # tiny.en, base: no download
        return str(folder)
    path = model_path(name)
    if path is not None:
        if path.is_file() and path.name == "model.bin":
            path = path.parent
        if path.is_dir() and (path / "model.bin").is_file():
            return str(path)
        what = "a folder without model.bin" if path.is_dir() else "a file"
        raise ModelLoadError(
            f"{path}: --backend faster-whisper needs a CTranslate2 model folder (model.bin, "
            f"config.json, tokenizer.json); this is {what}"
        )
    from faster_whisper.utils import available_models

    if "/" not in name and name not in available_models():
        raise ModelLoadError(
            f"--model {name}: not a faster-whisper model name ({', '.join(available_models())})"
            ", a Hugging Face repo id or a CTranslate2 model folder"
        )
    return name


def load_ct2(name: str, device: str, *, compute_type: str | None = None) -> CT2Model:
    """Load `name` (bundled tiny.en, a CTranslate2 folder, or a faster-whisper download).

    CPU runs int8 and CUDA float16 unless `compute_type` says otherwise (benchmarks compare).
    """
    try:
        import ctranslate2  # noqa: F401 - imported before measuring, so the library's own
        import faster_whisper  # pages are not counted as the model's footprint
    except ImportError:
        raise ModelLoadError(
            "--backend faster-whisper needs the faster-whisper package: pip install faster-whisper"
        ) from None
    kind, index = parse_device(device)
    compute = compute_type or (CUDA_COMPUTE_TYPE if kind == "cuda" else CPU_COMPUTE_TYPE)
    target = resolve_model(name)
    if not Path(target).is_dir():
        try:  # a name or repo id: faster-whisper's own download (or its Hugging Face cache)
            target = str(faster_whisper.download_model(target))
        except Exception as exc:
            fix = packaged_fix(name) or (
                "give a CTranslate2 model folder with --model, or use --backend whisper"
            )
            raise ModelLoadError(
                f"cannot download faster-whisper model {name} (no network?): {fix} "
                f"({type(exc).__name__})"
            ) from None
    meter = _Meter(kind)
    try:
        model = _construct(faster_whisper.WhisperModel, target, kind, index, compute)
    except ValueError as exc:
        if kind != "cuda" or compute_type is not None or "compute" not in str(exc).lower():
            raise _load_error(exc, target) from None
        compute = "default"  # a GPU without efficient float16: keep what the file holds
        try:
            model = _construct(faster_whisper.WhisperModel, target, kind, index, compute)
        except Exception as again:
            raise _load_error(again, target) from None
    except Exception as exc:
        raise _load_error(exc, target) from None
    footprint = meter.footprint(target, compute)
    return CT2Model(
        model=model, footprint_bytes=footprint, device=device, compute_type=compute, path=target
    )


def _construct(cls: Any, target: str, kind: str, index: int, compute: str) -> Any:
    """The model, with the CPU threads the pool gave this worker (SUBQ_CPU_THREADS, from
    the process's affinity and cgroup quota shared among the CPU workers); 0, where it is
    not set, is CTranslate2's own default (OMP_NUM_THREADS, else up to 4)."""
    threads = int(os.environ.get("SUBQ_CPU_THREADS") or 0) if kind == "cpu" else 0
    return cls(target, device=kind, device_index=index, compute_type=compute, cpu_threads=threads)


def _load_error(exc: BaseException, target: str) -> BaseException:
    """One line for the user; an out-of-memory becomes the error the pipeline handles."""
    if isinstance(exc, ModelLoadError):
        return exc
    if _is_cuda_oom(exc):
        return _as_torch_oom(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(f"{target}: cannot load the CTranslate2 model: {first[:200]}")


class _Meter:
    """What loading cost: RSS on the CPU, this process's NVML bytes on CUDA."""

    def __init__(self, kind: str) -> None:
        from .. import memory

        self.kind = kind
        self._memory = memory
        self.nvml: Any = None
        if kind == "cuda":
            self.nvml = memory.Nvml()
            self.gpu_before = self._gpu_used()
        memory.malloc_trim()
        self.rss_before = memory.rss_bytes()

    def _gpu_used(self) -> tuple[int | None, int | None]:
        """(this process's bytes on every GPU, every process's bytes on every GPU)."""
        import os

        nv = self.nvml
        if nv is None or not nv.ok:
            return None, None
        mine: int | None = None
        total: int | None = None
        for i in range(nv.count()):
            h = nv._call(lambda m, i=i: m.nvmlDeviceGetHandleByIndex(i))
            if h is None:
                continue
            info = nv._call(lambda m, h=h: m.nvmlDeviceGetMemoryInfo(h))
            if info is not None:
                total = (total or 0) + int(info.used)
            procs = nv._call(lambda m, h=h: m.nvmlDeviceGetComputeRunningProcesses(h), []) or []
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                if p.pid == os.getpid() and used is not None:
                    mine = (mine or 0) + int(used)
        return mine, total

    def footprint(self, target: str, compute: str) -> int:
        estimate = _weights_estimate(target, compute)
        if self.kind == "cuda":
            mine_before, total_before = self.gpu_before
            mine_after, total_after = self._gpu_used()
            if mine_after is not None:
                return max(0, mine_after - (mine_before or 0)) or estimate
            if total_after is not None and total_before is not None:
                return max(0, total_after - total_before) or estimate
            return estimate
        # Loading converts float16 weights to int8 through temporary buffers; give those back
        # first, or they are counted as the model's and never "returned" by an unload.
        self._memory.malloc_trim()
        delta = self._memory.rss_bytes() - self.rss_before
        # Another thread can allocate or free while we load; keep a plausible reading only.
        if estimate and 0.1 * estimate <= delta <= 4 * estimate:
            return delta
        return estimate


def _weights_estimate(target: str, compute: str) -> int:
    """Bytes of model.bin, halved for int8 weights read from a float16/32 file."""
    path = Path(target) / "model.bin"
    try:
        size = path.stat().st_size
    except OSError:
        return 0
    return size // 2 if compute.startswith("int8") else size


# -- transcribing --------------------------------------------------------------------------


def transcribe_ct2(
    model: CT2Model,
    audio: np.ndarray | Audio,
    options: TranscribeOptions,
    *,
    resume: Checkpoint | None = None,
    on_window: WindowHook | None = None,
    on_segment: SegmentHook | None = None,
) -> Transcript:
    """Run faster-whisper over `audio`, calling `on_window` before each 30 s window.

    If the hook raises, the stage stops with `TranscriptionStopped` holding the checkpoint
    (every segment before that window and the decoder state at its start), so nothing
    finished is lost and a resume continues exactly as the clean run would have.
    """
    from .faster_whisper_loop import Ct2Loop

    def keep(temperature: float, avg_logprob: float) -> bool:
        return not _every_fallback_failed(temperature, avg_logprob, options)

    source = as_audio(audio)
    refilled: tuple[Refill, ...] = ()
    try:
        replica = None if fallback_sampler(model.device) == IN_PLACE else partial(_replica, model)
        loop = Ct2Loop(model.model, source, options, resume, new_replica=replica)
        loop.run(on_window, on_segment, lambda: faults.maybe_fail("transcribe"), keep)
        found = loop.segments
        if options.fill_gaps:
            found, refilled = fill_gaps(found, source, loop.redecode)
    except RuntimeError as exc:
        raise_as_torch_oom(exc)
        raise
    return Transcript(
        segments=drop_invented(tuple(found), options),
        language=loop.language,
        language_probability=loop.probability,
        windows=loop.windows,
        stats={"fallbacks": loop.fallbacks},
        refilled=refilled,
    )


IN_PLACE, REPLICA = "in-place", "replica"


def fallback_sampler(device: str) -> str:
    """Where a window that falls back to sampling samples. On a GPU, on the model as loaded
    (ct2_sampling.py): a seeded replica there cost seconds and another copy of the weights
    (1.5-3 GB with large-v3) in the memory subq exists to manage. On the CPU, on a replica:
    tiny.en or base loads in 0.2-0.5 s, while sampling in place re-steps its prefix at every
    call (a 52-s French and Spanish file with base took 9x as long). SUBQ_FALLBACK_SAMPLER
    (in-place or replica) chooses for a test or a machine where the other suits better; a
    file must finish under the choice it started with to come out as a clean run would."""
    chosen = os.environ.get("SUBQ_FALLBACK_SAMPLER", "")
    if chosen in (IN_PLACE, REPLICA):
        return chosen
    return IN_PLACE if device.startswith("cuda") else REPLICA


def _replica(model: CT2Model) -> Any:
    """A second ctranslate2 model of the same weights (its own worker thread, so its own
    freshly seeded sampler; see faster_whisper_loop)."""
    import ctranslate2

    kind, index = parse_device(model.device)
    return ctranslate2.models.Whisper(
        model.path, device=kind, device_index=index, compute_type=model.compute_type
    )


def _every_fallback_failed(
    temperature: float, avg_logprob: float, options: TranscribeOptions
) -> bool:
    """A window that failed whisper's log-probability bar at every fallback temperature.

    openai-whisper keeps the last (hottest) sample of such a window, which is usually far
    below the bar, and `_drop_invented` removes it. faster-whisper instead keeps the best
    of all the failed samples, often a fluent invention ("I'm gonna be right back." on a
    440 Hz tone) just under the bar; it reports the last temperature it tried, so such a
    window is recognisable and dropped here, as the reference backend would.
    """
    temps = options.temperature
    return len(temps) > 1 and temperature >= max(temps) and avg_logprob < options.logprob_threshold


def raise_as_torch_oom(exc: RuntimeError) -> None:
    """Re-raise CTranslate2's CUDA out-of-memory RuntimeError as torch's type, which the
    pipeline retries lighter; return (for the caller to re-raise) on any other error."""
    if _is_cuda_oom(exc):
        converted = _as_torch_oom(exc)
        if converted is not exc:
            raise converted from exc


def _is_cuda_oom(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _as_torch_oom(exc: BaseException) -> BaseException:
    """CTranslate2 reports CUDA OOM as RuntimeError; the pipeline retries torch's OOM type."""
    try:
        import torch
    except ImportError:
        return exc
    if isinstance(exc, torch.OutOfMemoryError):
        return exc
    return torch.OutOfMemoryError(str(exc).strip().splitlines()[0])
