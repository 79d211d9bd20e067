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
