"""subq's engine: the one door the app and the CLI go through.

Everything the app may use is named here; nothing below this package is part of the API.
Names load lazily (PEP 562) because `subq --help` and `subq run` must not pay for modules
they do not touch, and importing the runner pulls in NumPy and the model manager.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # the engine and its control API
    "Engine": "runner",
    "describe_unload": "model_sizes",
    "Where": "commands",
    "reorder": "queue",
    # events the engine publishes
    "Event": "events",
    "EngineState": "events",
    "EngineStateChanged": "events",
    "GpuSample": "events",
    "JobChanged": "events",
    "JobRemoved": "events",
    "LoadedModel": "events",
    "LogEmitted": "events",
    "MemorySampled": "events",
    "ModelLoaded": "events",
    "ModelUnloaded": "events",
    "QueueReordered": "events",
    "StageProgressed": "events",
    "WorkerChanged": "events",
    # jobs as the app sees them
    "Job": "jobs",
    "JobState": "jobs",
    "Stage": "jobs",
    "cleanup_summary": "findings",
    "flag_notes": "findings",
    "flag_words": "findings",
    "removal_line": "findings",
    # what the user chose
    "BACKENDS": "settings",
    "CLEANUP_POLICIES": "settings",
    "FORMATS": "settings",
    "Settings": "settings",
    "SettingsError": "settings",
    "config_path": "settings",
    "default_state_path": "settings",
    "load_config": "settings",
    "save_config": "settings",
    "split_list": "settings",
    # the state file
    "StateError": "store",
    "saved_jobs": "saved_queue",
    "saved_work": "saved_queue",
    # media the picker and the table show
    "MEDIA_EXTENSIONS": "media",
    "MediaError": "media",
    "absolute": "media",
    "expand_path": "media",
    "expand_paths": "media",
    "missing_file": "media",
    "is_media": "media",
    "probe": "media",
    "Prober": "prober",
    "probe_isolated": "prober",
    # memory, as text and checks
    "CONTEXT_NOTE": "memory",
    "device_problem": "memory",
    "cluster_problem": "cluster",
    "fmt_bytes": "model_sizes",
    # the engine as a service the app attaches to
    "EngineClient": "client",
    "EngineUnavailable": "client",
    "attach_engine": "client",
    "connect_engine": "client",
    # the headless front ends
    "hard_exit": "headless",
    "run_batch": "headless",
    "run_demo": "headless",
    "summary": "headless",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain dict hit
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and editors; at run time the names load lazily
    from .cluster import cluster_problem
    from .commands import Where
    from .events import (
        EngineState,
        EngineStateChanged,
        Event,
        GpuSample,
        JobChanged,
        JobRemoved,
        LoadedModel,
        LogEmitted,
        MemorySampled,
        ModelLoaded,
        ModelUnloaded,
        QueueReordered,
        StageProgressed,
        WorkerChanged,
    )
    from .findings import cleanup_summary, flag_notes, flag_words, removal_line
    from .headless import hard_exit, run_batch, run_demo
    from .jobs import Job, JobState, Stage
    from .media import (
        MEDIA_EXTENSIONS,
        MediaError,
        absolute,
        expand_path,
        expand_paths,
        is_media,
        missing_file,
        probe,
    )
    from .memory import CONTEXT_NOTE, device_problem
    from .model_sizes import describe_unload, fmt_bytes
    from .prober import Prober, probe_isolated
    from .queue import reorder
    from .runner import Engine
    from .saved_queue import saved_jobs, saved_work
    from .settings import (
        BACKENDS,
        CLEANUP_POLICIES,
        FORMATS,
        Settings,
        SettingsError,
        config_path,
        default_state_path,
        load_config,
        save_config,
        split_list,
    )
    from .store import StateError
