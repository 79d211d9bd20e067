"""The job queue: its order, and the one rule for moving a job in it."""

from __future__ import annotations

from .commands import Where


def reorder(order: list[int], job_id: int, where: Where) -> list[int]:
    """`order` with `job_id` moved one place up or down, or to the top or bottom.

    An id that is not in `order` leaves it as it is (a copy). The engine and the job table
    both use this, so a key press shows at once exactly where the engine will put the job.
    """
    if job_id not in order:
        return list(order)
    rest = list(order)
    index = rest.index(job_id)
    rest.pop(index)
    target = {
        "up": max(0, index - 1),
        "down": min(len(rest), index + 1),
        "top": 0,
        "bottom": len(rest),
    }[where]
    rest.insert(target, job_id)
    return rest
