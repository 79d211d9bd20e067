"""The worker protocol: small frozen messages of plain values between the engine and a worker.

A worker process (engine/worker_main.py) holds the models and runs the model calls; the
engine (engine/worker.py) sends it requests and reads replies over one duplex channel. Every
field is a plain value (str, int, float, bool, None, bytes, and tuples, lists and dicts of
them), so a message can cross any transport (a pipe today, a Ray actor call later) and
unpickling one never imports a library: `loads` refuses any class that is not a message
here, so a reply can never drag torch into the engine's process. Exceptions cross as
`Error(kind, message)`, never as pickled library exceptions.

One call runs at a time per worker (Load, Unload, Transcribe, Translate, Call); Stop,
GetStats and Quit may arrive during a call and are answered at the next window.

Every request carries a `call` number, new for each request to a worker, and every reply
names the call it answers; a worker first answers `Accepted(call)` when it takes a call.
The engine's side (worker.py) takes a reply for any other call, a frame it cannot read
or one over `MAX_FRAME` as a broken channel and ends the worker: a reply can never be
taken for another call's, and a death before `Accepted` is never blamed on that call.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = 2
MAX_FRAME = 64 << 20  # bytes: a reply is a few KB (checkpoints carry only new segments)

# Error kinds: what the engine decides on (the message is for people).
OOM = "oom"  # out of memory on the device: retry lighter, fall back, or fail the job
CUDA = "cuda"  # the device is poisoned (device-side assert, illegal address): worker exits
MEDIA = "media"  # the file cannot be decoded: the job fails
MODEL = "model"  # the model cannot be loaded: the job fails with this message
TRANSLATION = "translation"
OS = "os"  # a file could not be read or written (OSError)
BAD_REQUEST = "bad_request"  # an unknown model key or request: a bug in the engine
INTERNAL = "internal"  # anything else; `detail` holds the worker's traceback for the log


# -- requests: engine -> worker -----------------------------------------------------------
@dataclass(frozen=True)
class Load:
    """Load a model; answered by Loaded (or Error). `kind` is "asr" or "translate"."""

    kind: str
    name: str
    device: str = "cpu"
    backend: str = ""  # asr: "faster-whisper" or "whisper"

    @property
    def key(self) -> str:
        return model_key(self.kind, self.name, self.device, self.backend)

    call: int = 0


@dataclass(frozen=True)
class Unload:
    """Free one model by key ("" = all); answered by Unloaded with the RSS given back."""

    key: str = ""
    call: int = 0


@dataclass(frozen=True)
class Transcribe:
    """Decode `path` in the worker and transcribe it with the loaded model `model` (a key).

    `options` holds TranscribeOptions fields; `resume` a Checkpoint.to_json() or None.
    Answered by Progress and Checkpointed messages, then Done({"segments", "language",
    "windows", "cleaned"}), Stopped (a Stop request was seen at a window) or Error.
    `clean`: free what the stage left cached before answering (the cleanup policy's call,
    made by the engine, which knows whether another stage of the job follows); "cleaned"
    is the seconds that took, or None.
    """

    job: str
    model: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)
    resume: dict[str, Any] | None = None
    clean: bool = False
    call: int = 0


@dataclass(frozen=True)
class Translate:
    """Translate `lines`; answered by Progress per batch, then Done({"lines", "cleaned"}).

    `clean` as for Transcribe.
    """

    job: str
    model: str
    lines: tuple[str, ...]
    src: str
    tgt: str
    batch_size: int = 32
    clean: bool = False
    call: int = 0


@dataclass(frozen=True)
class Call:
    """Run `target` ("module:function") with `kwargs` and a `window(checkpoint, fraction)`
    hook that behaves like a transcription's safe point (Stop works there): for tests and
    for stages that are not models' calls. Done carries what it returns (plain values)."""

    job: str
    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    call: int = 0


@dataclass(frozen=True)
class GetStats:
    """Answered by Stats, between calls or at the next window of a running call."""

    call: int = 0


@dataclass(frozen=True)
class Stop:
    """End call `job` at its next window with Stopped(checkpoint); `reason` comes back in
    the reply ("pause", "cancel", "unload", "quit"). A Stop for a job not running is
    ignored (it may have finished while the Stop was on its way)."""

    job: str
    reason: str = "pause"


@dataclass(frozen=True)
class Quit:
    """Stop any call at its next window and exit (status 0)."""


# -- replies: worker -> engine ------------------------------------------------------------
@dataclass(frozen=True)
class Ready:
    """Sent once, when the worker serves requests. `libraries`: model libraries it has
    imported already (empty unless it was started with preload)."""

    pid: int
    seconds: float  # from the worker's interpreter start to this message
    libraries: tuple[str, ...] = ()
    protocol: int = PROTOCOL


@dataclass(frozen=True)
class Loaded:
    key: str
    bytes: int  # the model's own footprint
    seconds: float
    rss: int
    call: int = 0


@dataclass(frozen=True)
class Unloaded:
    keys: tuple[str, ...]
    returned: int  # RSS given back by the unload (bytes; 0 if it grew)
    rss: int
    gpu_returned: int | None = None  # torch's reserved bytes given back, if CUDA was used
    call: int = 0


@dataclass(frozen=True)
class Accepted:
    """The worker took call `call` (sent before any other reply to it): a worker that dies
    before this never saw the call, so the call's job is not to blame."""

    call: int


@dataclass(frozen=True)
class Progress:
    job: str
    fraction: float
    call: int = 0


@dataclass(frozen=True)
class Checkpointed:
    """A safe point: everything before `checkpoint["seek"]` is done and resumable."""

    job: str
    fraction: float
    checkpoint: dict[str, Any]
    call: int = 0


@dataclass(frozen=True)
class Done:
    job: str
    result: Any
    call: int = 0


@dataclass(frozen=True)
class Stopped:
    job: str
    reason: str
    checkpoint: dict[str, Any] | None
    call: int = 0


@dataclass(frozen=True)
class Error:
    job: str  # "" for a request that is not a job's (Load, Unload)
    kind: str
    message: str
    detail: str = ""  # the worker's traceback, for the log only
    call: int = 0


@dataclass(frozen=True)
class Stats:
    pid: int
    rss: int
    models: tuple[tuple[str, int], ...]  # (key, bytes) per loaded model
    gpu_bytes: int | None  # torch's reserved bytes in this worker; None without CUDA
    call: int = 0


@dataclass(frozen=True)
class Exited:
    """Made by the engine's side when the worker process is gone; never sent."""

    code: int
    how: str  # "exit status 0", "exit status 70", "signal 9 (SIGKILL)"
    accepted: bool = True  # False: it died before it took the call it was asked
    stuck: bool = False  # True: ended by the engine for not stopping a call after a Stop


REQUESTS = (Load, Unload, Transcribe, Translate, Call, GetStats, Stop, Quit)
REPLIES = (
    Ready,
    Accepted,
    Loaded,
    Unloaded,
    Progress,
    Checkpointed,
    Done,
    Stopped,
    Error,
    Stats,
    Exited,
)
MESSAGES = {cls.__name__: cls for cls in (*REQUESTS, *REPLIES)}


def model_key(kind: str, name: str, device: str, backend: str = "") -> str:
    return f"{kind}:{backend}:{name}@{device}" if backend else f"{kind}:{name}@{device}"


def plain(value: Any) -> Any:
    """`value` as plain Python values: numpy scalars become int/float, lists stay lists."""
    if value is None or type(value) in (str, bool, int, float, bytes):
        return value
    for kind in (bool, int, float, str, bytes):  # subclasses: numpy.float64 is a float
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "item"):  # a numpy scalar or 0-d array
        return plain(value.item())
    raise TypeError(f"not a plain value for the worker protocol: {type(value).__name__}")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name in MESSAGES:
            return MESSAGES[name]
        raise pickle.UnpicklingError(f"not a worker message: {module}.{name}")


def dumps(message: Any) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    """A message from bytes; refuses every class that is not one of MESSAGES."""
    return _Unpickler(io.BytesIO(data)).load()
