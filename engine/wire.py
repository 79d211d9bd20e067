"""Engine values as JSON and back, for the socket between the engine service and its apps.

JSON, never pickle: the socket carries orders and events, and decoding what a peer sent
must never run code, whoever the peer turns out to be. Only the types named in `TYPES` are
rebuilt (events, jobs, settings and what they hold); anything else is refused, so a newer
peer's unknown event is a clear error instead of a half-built object.

A dataclass becomes {"~": "TypeName", field: value...}; an enum {"~e": "TypeName", "v": value};
tuples become lists and come back as tuples where the field says tuple (every field of
these frozen types that is a sequence is a tuple).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any

from . import events
from .jobs import Job, JobState, Stage
from .settings import Settings

TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        events.JobChanged,
        events.JobRemoved,
        events.QueueReordered,
        events.StageProgressed,
        events.WorkerChanged,
        events.ModelLoaded,
        events.ModelUnloaded,
        events.GpuProcess,
        events.GpuSample,
        events.MemorySampled,
        events.LoadedModel,
        events.EngineStateChanged,
        events.LogEmitted,
        Job,
    )
}
ENUMS: dict[str, type[enum.Enum]] = {
    cls.__name__: cls for cls in (JobState, Stage, events.EngineState)
}


class WireError(ValueError):
    """A message that is not one this version of subq reads."""


def encode(value: Any) -> Any:
    """`value` as plain JSON-able data (see the module docstring)."""
    if isinstance(value, Settings):
        return {"~": "Settings", "json": value.to_json()}
    if isinstance(value, enum.Enum):
        return {"~e": type(value).__name__, "v": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in TYPES:
            raise WireError(f"{name} is not sent over the socket")
        data = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"~": name, **data}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise WireError(f"{type(value).__name__} is not sent over the socket")


def decode(data: Any) -> Any:
    """The value `encode` made; WireError for anything else."""
    if isinstance(data, list):
        return tuple(decode(v) for v in data)
    if not isinstance(data, dict):
        return data
    if "~e" in data:
        cls = ENUMS.get(data["~e"])
        if cls is None:
            raise WireError(f"unknown enum {data['~e']!r}")
        return cls(data["v"])
    name = data.get("~")
    if name is None:
        return {k: decode(v) for k, v in data.items()}
    if name == "Settings":
        return _settings(data["json"])
    cls = TYPES.get(name)
    if cls is None:
        raise WireError(f"unknown type {name!r} (a newer subq?)")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    try:
        return cls(**{k: decode(v) for k, v in data.items() if k in names})
    except TypeError as exc:
        raise WireError(f"{name}: {exc}") from None


@functools.lru_cache(maxsize=64)
def _settings(text: str) -> Settings:
    """Every job of a batch carries the same settings: read each text once (frozen, so one
    value may be shared), not once per event of 10,000."""
    return Settings.from_json(text)
