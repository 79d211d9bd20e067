"""When a job cannot simply go on: resuming from a saved checkpoint, and transcribing again
after running out of GPU memory (lighter, then on the CPU if allowed). Out of memory is the
worker's Error kind "oom": this process never sees (nor imports) torch's exception."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from . import asr, memory
from . import worker_protocol as wp
from .job_context import JobContext
from .jobs import Job, clock
from .model_sizes import fmt_bytes
from .model_types import RemoteError
from .options import TranscribeOptions
from .pool import real_device
from .settings import Settings


class GpuMemoryError(Exception):
    """Out of GPU memory after the lighter retry; str() is the one-line message."""


def log_refills(ctx: JobContext, job: Job, refilled: Any) -> None:
    """Say in the job's log (its details) where skipped speech was decoded again."""
    for start, end, found in refilled:
        ctx.log(
            "info",
            f"{job.name}: speech at {clock(start)}-{clock(end)} had no subtitles; decoded "
            f"again without the previous-text prompt: {found} segment(s)",
            job.id,
        )


def resume_point(ctx: JobContext, job: Job, key: str) -> asr.Checkpoint | None:
    """The saved checkpoint, if it can resume this transcription exactly (said in the log);
    any other is dropped with one log line saying why, and the file starts from the beginning."""
    store, name = ctx.store, job.name
    held, data = store.saved_checkpoint(job.id)
    if data is None:
        return None
    if held != key:
        same_settings = (held or "").split(":", 1)[0] == key.split(":", 1)[0]
        why = "belongs to " + (
            "another version of this file" if same_settings else "other settings"
        )
    elif (resume := asr.load_checkpoint(data)) is not None:
        kept = f"{len(resume.segments)} segments kept"
        ctx.log("info", f"{name}: resuming at {resume.seek:.1f} s ({kept})", job.id)
        return resume
    else:
        why = "is from an older subq and cannot resume exactly"
    store.set_checkpoint(job.id, "", None)
    ctx.log(
        "info",
        f"{name}: the saved checkpoint {why}; transcribing from the beginning",
        job.id,
    )
    return None


def is_oom(exc: BaseException) -> bool:
    """Whether a worker's call ran out of device memory (its Error's kind says so)."""
    return isinstance(exc, RemoteError) and exc.kind == wp.OOM


def transcribe_after_oom(
    ctx: JobContext,
    job: Job,
    settings: Settings,
    entry: str,
    options: TranscribeOptions,
    run: Callable[[str, TranscribeOptions], Any],
) -> tuple[Any, str]:
    """Retry once lighter (beam 1; in batched mode, whose beam is 1 already, half the
    chunks per call), then fall back to the CPU if allowed. `run(entry, options)` runs the
    transcription in that entry's worker (the worker frees its cache after an error)."""
    half = max(1, options.batch_size // 2) if options.batch_size else 0
    how = f"{half} chunks per batch" if options.batch_size else "beam 1"
    ctx.oom(job, f"out of GPU memory in transcription; retrying with {how}")
    lighter = dataclasses.replace(options, beam_size=None, batch_size=half)
    try:
        return run(entry, lighter), entry
    except RemoteError as exc:
        if not is_oom(exc):
            raise
        if settings.oom_fallback != "cpu":
            ctx.oom(job, "out of GPU memory again; the job fails")
            raise GpuMemoryError(oom_message(ctx, job, real_device(entry), exc)) from None
    ctx.oom(job, "out of GPU memory again; running this job on the CPU")
    cpu = "cpu" if real_device(entry) != "cpu" else entry
    return run(cpu, dataclasses.replace(lighter, fp16=False)), cpu


def oom_message(ctx: JobContext, job: Job, device: str, exc: BaseException) -> str:
    match = re.search(r"Tried to allocate ([\d.]+ \w+)", str(exc))
    needed = match.group(1) if match else "more than was free"
    free = memory.free_device_bytes(device, ctx.nvml())
    return f"{job.name}: out of GPU memory (needed {needed}, free {fmt_bytes(free)})"
