"""Is a process alive? One answer for the whole engine (leases, temp files)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while `pid` runs on this host (a process we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity (`taskset`, a scheduler's slice of a big
    node) and its cgroup's CPU quota (a container's limit), whichever is smaller.
    `os.cpu_count()` counts the machine's, so a 4-core slice of a 128-core node would start
    128 threads' worth of workers."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(count, quota) if quota else count)


def _cgroup_quota() -> int | None:
    """Whole CPUs the cgroup may use (rounded up), or None when unlimited or unknown."""
    for path, parse in (
        ("/sys/fs/cgroup/cpu.max", lambda t: t.split()),  # v2: "max 100000" or "200000 100000"
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", None),  # v1, with cpu.cfs_period_us
    ):
        try:
            text = open(path).read().strip()  # noqa: SIM115 - one read of a tiny file
            if parse is not None:
                quota, period = parse(text)
            else:
                quota = text
                period = open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read().strip()  # noqa: SIM115
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        return max(1, -(-int(quota) // int(period)))
    return None
