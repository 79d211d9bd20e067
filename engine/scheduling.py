"""Which waiting job a free worker takes when several workers share a batch.

In queue order, two workers finish a batch late whenever its longest file starts last: one
worker idles while the other works through it alone (about 4 % of a 6-file batch's time in
the measurement behind issue 28). Starting the longest of the files queued in one go first
(LPT scheduling) lets the short ones fill in around it. The rule never overrides the user:
a job whose place the user set (a move) keeps its turn, a file that was already under way
goes first as before, and the order shown in the table does not change (only which of the
head's files starts first).
"""

from __future__ import annotations

import os

from .jobs import Job, JobState


def longest_first(waiting: list[Job]) -> list[Job]:
    """`waiting` (runnable jobs in queue order) as the order to try them in: the head's add
    (the jobs at the head of the queue that arrived in one add, untouched by the user, not
    yet begun) with its longest file first, then the rest in queue order."""
    if not waiting or not _fresh(waiting[0]):
        return waiting
    head = waiting[0]
    group = []
    for job in waiting:
        if not (_fresh(job) and job.created == head.created):
            break
        group.append(job)
    if len(group) < 2:
        return waiting
    sizes = _work(group)
    first = max(group, key=lambda j: sizes[j.id])  # max keeps the earliest of equals
    return [first, *(j for j in waiting if j is not first)]


def _fresh(job: Job) -> bool:
    return job.state == JobState.QUEUED and not job.ordered and not job.resume_from


def _work(group: list[Job]) -> dict[int, float]:
    """How long each file is: its duration where every one of them is known (probed), else
    its size in bytes (one add is nearly always files of one kind, where size follows
    length; reading a header of each would cost a probe per file on the engine thread)."""
    if all(j.duration for j in group):
        return {j.id: float(j.duration or 0.0) for j in group}
    sizes = {}
    for job in group:
        try:
            sizes[job.id] = float(os.stat(job.path).st_size)
        except OSError:
            sizes[job.id] = 0.0  # its own run will say what is wrong with it
    return sizes
