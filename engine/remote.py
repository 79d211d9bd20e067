"""One call in a worker, as a job's stage sees it: the worker's messages become progress,
stored checkpoints and safe points.

Every message from the worker (a segment's progress, a window's checkpoint, a translated
batch) is a safe point here: when the job must stop (pause, cancel, unload, shutdown, a
lost lease) a Stop request goes out at once, and the worker ends the call at its next
window, so a stop costs at most one window. Whatever a handler raises (StopRequested, a
StateError) stops the call the same way and is raised here once the worker has stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import worker_protocol as wp
from .job_context import JobContext, StopRequested
from .jobs import Job, JobState
from .model_types import WorkerDied


def remote_call(
    ctx: JobContext,
    job: Callable[[], Job],
    entry: str,
    request: Any,
    on_window: Callable[[dict[str, Any], float], None],
    on_progress: Callable[[float], Any],
) -> Any:
    """Run `request` in the entry's worker; its Done result, or raise why it stopped."""
    held: list[BaseException] = []
    segments: list[Any] = []  # the call's segments so far: checkpoints carry only new ones

    def whole(checkpoint: dict[str, Any]) -> dict[str, Any]:
        if "segments_from" not in checkpoint:
            return checkpoint
        del segments[checkpoint["segments_from"] :]
        segments.extend(checkpoint["segments"])
        rest = {k: v for k, v in checkpoint.items() if k != "segments_from"}
        return {**rest, "segments": list(segments)}

    def on_message(message: Any) -> None:
        try:
            if isinstance(message, wp.Checkpointed):  # stored even once a Stop is on its way
                on_window(whole(message.checkpoint), message.fraction)
            elif isinstance(message, wp.Progress) and not held:
                on_progress(message.fraction)
            if not held:
                ctx.safe_point(job())
        except BaseException as exc:  # stop the call, then raise it here
            if held:
                return
            held.append(exc)
            reason = "pause" if isinstance(exc, StopRequested) else "error"
            worker = ctx.models.pool.slot(entry).worker
            if worker is not None:
                worker.send(wp.Stop(request.job, reason))

    try:
        reply = ctx.models.call(entry, request, on_message)
    except WorkerDied as died:
        if not died.stopping:
            raise
        # killed for not ending the call after a Stop (a stuck call): the job stops as it
        # was asked to, from its last stored checkpoint
        if held:
            raise held[0] from None
        ctx.safe_point(job())
        raise StopRequested(JobState.PAUSED, "paused") from None
    if held and not (isinstance(reply, wp.Done) and isinstance(held[0], StopRequested)):
        raise held[0]  # (a call that finished before its Stop keeps its result: the job
        # stops at its next safe point, with this stage's work stored)
    if isinstance(reply, wp.Stopped):  # the engine stopped it (interrupt): say why
        if reply.checkpoint:
            on_window(whole(reply.checkpoint), -1.0)
        ctx.safe_point(job())
        raise StopRequested(JobState.PAUSED, "paused")  # (the order was taken back)
    return reply.result
