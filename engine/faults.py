"""Fault injection for tests, driven through the real code paths.

`SUBQ_FAULTS` holds comma-separated `point:kind[:count[:match]]` entries, for example
`write:ENOSPC`, `transcribe:OOM:1` or `open:EACCES::secret` (only targets containing
"secret"; an empty count means every time). It is read from the environment so a
test can inject into a child process as easily as into its own. Production runs never set it.
"""

from __future__ import annotations

import errno
import os
import threading

_lock = threading.Lock()
_used: dict[str, int] = {}


def _entries() -> list[tuple[str, str, int | None, str]]:
    spec = os.environ.get("SUBQ_FAULTS", "")
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":", 3)
        count = int(parts[2]) if len(parts) > 2 and parts[2] else None
        match = parts[3] if len(parts) > 3 else ""
        out.append((parts[0], parts[1] if len(parts) > 1 else "", count, match))
    return out


def maybe_fail(point: str, target: str = "") -> None:
    """Raise the injected fault for `point`, if one is armed (and not used up)."""
    for name, kind, count, match in _entries():
        if name != point or match not in target:
            continue
        with _lock:
            used = _used.get(item := f"{name}:{kind}", 0)
            if count is not None and used >= count:
                continue
            _used[item] = used + 1
        if kind == "OOM":
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory (injected by SUBQ_FAULTS)")
        code = getattr(errno, kind, None)
        if code is None:
            raise RuntimeError(f"injected fault at {point}")
        raise OSError(code, os.strerror(code), target or None)


def injected_free_bytes() -> int | None:
    """A fake free-GPU-memory reading (`SUBQ_FAKE_FREE_BYTES`), for the memory-wait path."""
    value = os.environ.get("SUBQ_FAKE_FREE_BYTES")
    if not value:
        return None
    path = value.removeprefix("@")
    if value.startswith("@"):  # a file whose content a test can change while we run
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None
    return int(value)


def reset() -> None:
    with _lock:
        _used.clear()
