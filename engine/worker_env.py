"""A worker's environment and log file, built here and passed whole to the new process.

The engine never mutates `os.environ`: thread counts and the one GPU a worker may see are
set in a copy given to that worker alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .private import private_dir

DEFAULT_LOG = "default"  # the engine's log file (settings.log_path)


class WorkerError(Exception):
    """The worker could not be started, or died before it answered."""


def worker_env(
    device: str,
    threads: int | None = None,
    *,
    base: Mapping[str, str] | None = None,
    gpu_uuid: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], str]:
    """The environment for a worker on `device`, and the device's name inside it.

    `threads` sets OMP/MKL/OpenBLAS and SUBQ_CPU_THREADS (CTranslate2's cpu_threads). A CUDA
    entry sees only its own GPU: `gpu_uuid` (NVML's, the surest), else its index in the
    CUDA_VISIBLE_DEVICES the user set (cuda:1 with "2,3" is GPU 3), else its index; inside
    the worker it is cuda:0. A CPU worker sees no GPU, so it never makes a CUDA context.
    """
    source = os.environ if base is None else base
    env = dict(source)
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
        env["SUBQ_CPU_THREADS"] = str(threads)
    kind, _, index = device.partition(":")
    if kind == "cuda":
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # the order NVML numbers GPUs in
        number = int(index or 0)
        user = source.get("CUDA_VISIBLE_DEVICES")
        if gpu_uuid:
            visible = gpu_uuid
        elif user is not None:
            entries = [e.strip() for e in user.split(",") if e.strip()]
            if number >= len(entries):
                raise WorkerError(
                    f"{device}: CUDA_VISIBLE_DEVICES={user!r} lists {len(entries)} GPU(s)"
                )
            visible = entries[number]
        else:
            visible = str(number)
        env["CUDA_VISIBLE_DEVICES"] = visible
        local = "cuda:0"
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
        local = "cpu"
    env.update(extra or {})
    return env, local


def log_target(log: str | Path | None) -> Path | None:
    if log == DEFAULT_LOG:
        from .settings import log_path

        path = log_path()
        try:
            private_dir(path.parent)
        except OSError:
            return None
        return path
    return Path(log) if log else None
