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

    def on_message(message: Any) -> None:
        try:
            if isinstance(message, wp.Checkpointed):  # stored even once a Stop is on its way
                on_window(message.checkpoint, message.fraction)
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

    reply = ctx.models.call(entry, request, on_message)
    if held and not (isinstance(reply, wp.Done) and isinstance(held[0], StopRequested)):
        raise held[0]  # (a call that finished before its Stop keeps its result: the job
        # stops at its next safe point, with this stage's work stored)
    if isinstance(reply, wp.Stopped):  # the engine stopped it (interrupt): say why
        if reply.checkpoint:
            on_window(reply.checkpoint, -1.0)
        ctx.safe_point(job())
        raise StopRequested(JobState.PAUSED, "paused")  # (the order was taken back)
    return reply.result
