"""A worker process's side: `python -P -m subq.engine.worker_main --fd N --parent PID ...`.

The engine starts it (engine/worker.py) with an explicit environment (thread counts, the one
GPU it may see) and one end of a socket pair. It decodes, loads the models and runs the
model calls; only plain messages (engine/worker_protocol.py) cross the channel, never audio.

Before anything heavy is imported: fds 1 and 2 go to the log (C libraries must never write
on the app's terminal), the worker dies with its parent (PR_SET_PDEATHSIG, and end-of-pipe
ends it too), and SIGINT / SIGHUP are ignored: the user's Ctrl-C and a dropped SSH reach the
engine, which stops its workers at a safe point.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import dataclasses
import gc
import importlib
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import faults
from . import worker_protocol as p

MODEL_LIBRARIES = ("torch", "ctranslate2", "whisper", "faster_whisper", "transformers")
PRELOADS = {
    "faster-whisper": ("ctranslate2", "faster_whisper"),
    "whisper": ("torch", "whisper"),
    "translate": ("torch", "transformers"),
}
CUDA_FAULT_STATUS = 70  # the exit status after a CUDA fault: the context cannot be trusted
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("subq.worker")


def _redirect_output(path: str | None) -> None:
    """fds 1 and 2 to the log (or /dev/null): whatever a C library prints lands there."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        fd = os.open(path, flags, 0o644) if path else os.open(os.devnull, os.O_WRONLY)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _die_with_parent(parent: int, pdeathsig: bool) -> None:
    """SIGKILL this worker when its parent dies (Linux; elsewhere end-of-pipe alone does).

    The kernel sends it when the *thread* that spawned the worker ends, so the engine must
    start workers from a thread that lives as long as it does (its engine thread)."""
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


class BadRequest(Exception):
    """A request this worker cannot serve (unknown model key or kind): the engine's bug."""


class _StopCall(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Server:
    """Serves requests one call at a time; Stop, GetStats and Quit also at every window."""

    def __init__(self, conn: Any, devices: dict[str, str]) -> None:
        self.conn = conn
        self.devices = devices  # the engine's device name -> this process's (CUDA_VISIBLE)
        self.models: dict[str, tuple[p.Load, Any, int]] = {}
        self.deferred: collections.deque[Any] = collections.deque()
        self.job: str | None = None
        self.call_id = 0  # the call running (or last run): every reply names it
        self.sent_segments = 0  # segments of this call's checkpoints already sent
        self.last_checkpoint: dict[str, Any] | None = None
        self.quitting = False

    # -- the channel ----------------------------------------------------------------------
    def send(self, message: Any) -> None:
        """Send a reply, every field made plain (a numpy scalar would not unpickle there),
        naming the call it answers (the one running, unless it names its own)."""
        values = {f.name: p.plain(getattr(message, f.name)) for f in dataclasses.fields(message)}
        if values.get("call") == 0 and not isinstance(message, p.Stats):  # Stats: its asker's
            values["call"] = self.call_id
        data = p.dumps(type(message)(**values))
        if isinstance(message, p.Checkpointed):
            try:
                faults.maybe_fail("reply")
            except faults.InjectedChannelFault as fault:
                wrong = {**values, "call": self.call_id + 1000}
                data = (
                    b"\x80\x05garbled"
                    if fault.kind == "GARBLE"
                    else p.dumps(type(message)(**wrong))
                )
        try:
            self.conn.send_bytes(data)
        except OSError:  # the engine is gone: nothing to report to, nobody to hold a GPU for
            os._exit(0)

    def recv(self) -> Any:
        try:
            return p.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            os._exit(0)

    def serve(self) -> None:
        while not self.quitting:
            message = self.deferred.popleft() if self.deferred else self.recv()
            if isinstance(message, p.GetStats):
                self.send(dataclasses.replace(self.stats(), call=message.call))
            elif isinstance(message, p.Quit):
                self.quitting = True
            elif isinstance(message, p.Stop):
                pass  # its call ended before the Stop arrived
            else:
                self.call(message)
                faults.maybe_fail("idle")  # a worker that dies between calls (tests)

    def safe_point(self) -> None:
        """At a window: answer GetStats, honour Stop / Quit, keep other requests for later."""
        while self.conn.poll(0):
            message = self.recv()
            if isinstance(message, p.GetStats):
                self.send(dataclasses.replace(self.stats(), call=message.call))
            elif isinstance(message, p.Stop):
                if message.job == self.job:
                    raise _StopCall(message.reason)
            elif isinstance(message, p.Quit):
                self.quitting = True
                raise _StopCall("quit")
            else:
                self.deferred.append(message)

    # -- calls ----------------------------------------------------------------------------
    def call(self, message: Any) -> None:
        handler = getattr(self, "do_" + type(message).__name__.lower(), None)
        job = getattr(message, "job", "")
        self.job, self.last_checkpoint, self.sent_segments = job, None, 0
        self.call_id = getattr(message, "call", 0)
        self.send(p.Accepted(self.call_id))
        try:
            if handler is None:
                raise BadRequest(f"not a request: {type(message).__name__}")
            handler(message)
        except _StopCall as stop:
            self.send(p.Stopped(job, stop.reason, self.last_checkpoint))
        except Exception as exc:
            kind, text = classify(exc)
            log.error("%s failed: %s\n%s", type(message).__name__, text, traceback.format_exc())
            self.send(p.Error(job, kind, text, traceback.format_exc(limit=20)))
            if kind == p.CUDA:
                os._exit(CUDA_FAULT_STATUS)
        finally:
            self.job = None

    def window(self, checkpoint: dict[str, Any], fraction: float) -> None:
        """A safe point: send the checkpoint with only the segments not sent yet in this
        call (`segments_from` says where they go), so a long file's replies stay small."""
        segments = checkpoint.get("segments", [])
        delta = {**checkpoint, "segments": segments[self.sent_segments :]}
        delta["segments_from"] = self.sent_segments
        self.sent_segments = len(segments)
        self.last_checkpoint = p.plain(delta)
        self.send(p.Checkpointed(self.job or "", float(fraction), self.last_checkpoint))
        self.safe_point()

    def progress(self, fraction: float) -> None:
        self.send(p.Progress(self.job or "", float(fraction)))

    def do_load(self, message: p.Load) -> None:
        from . import memory

        key, started, rss = message.key, time.perf_counter(), memory.rss_bytes()
        if key not in self.models:
            device = self.devices.get(message.device, message.device)
            if message.kind == "asr":
                from subq.engine import asr

                backend = asr.resolve_backend(message.backend or "auto", device, message.name)
                model = asr.load_backend(backend, message.name, device)
                nbytes = asr.footprint(model)
                message = p.Load(message.kind, message.name, device, backend)
            elif message.kind == "translate":
                from subq.engine.translate import load_translator

                model = load_translator(message.name, device)
                nbytes = memory.model_bytes(model.model)
            else:
                raise BadRequest(f"no model kind {message.kind!r}")
            self.models[key] = (message, model, int(nbytes))
        seconds = time.perf_counter() - started
        log.info("loaded %s in %.2f s (+%d MB RSS)", key, seconds, (memory.rss_bytes() - rss) >> 20)
        self.send(p.Loaded(key, self.models[key][2], seconds, memory.rss_bytes()))

    def do_unload(self, message: p.Unload) -> None:
        from . import memory

        rss, gpu = memory.rss_bytes(), _gpu_bytes()
        keys = [k for k in ([message.key] if message.key else self.models) if k in self.models]
        dropped = [self.models.pop(k) for k in keys]
        devices = {load.device for load, _, _ in dropped}
        del dropped
        gc.collect()
        for device in devices:
            memory.clean(device)
        memory.malloc_trim()
        after, gpu_after = memory.rss_bytes(), _gpu_bytes()
        returned_gpu = None if gpu is None else max(0, gpu - (gpu_after or 0))
        self.send(p.Unloaded(tuple(keys), max(0, rss - after), after, returned_gpu))

    def do_transcribe(self, message: p.Transcribe) -> None:
        from subq.engine import asr, media

        load, model = self.model(message.model, "asr")
        options = transcribe_options(message.options)
        resume = asr.load_checkpoint(message.resume) if message.resume else None
        if message.resume and resume is None:
            raise BadRequest("the checkpoint cannot resume this transcription exactly")
        # Streamed (a window at a time) where media has it, else the whole file's samples.
        opener = getattr(media, "open_audio", None) or media.decode_audio
        audio = opener(Path(message.path))
        try:
            result = asr.run_backend(
                load.backend,
                model,
                audio,
                options,
                resume=resume,
                on_window=lambda cp, fraction: self.window(cp.to_json(), fraction),
                on_segment=self.progress,
            )
        except asr.TranscriptionStopped as stopped:
            # a Stop at a window, or a fault raised there: either way reported as itself
            self.last_checkpoint = p.plain(stopped.checkpoint.to_json())
            raise stopped.cause from None
        segments = [p.plain(s.to_json()) for s in result.segments]
        result_value = {
            "segments": segments,
            "language": result.language,
            "language_probability": result.language_probability,
            "refilled": [r.to_json() for r in result.refilled],
        }
        cleaned = self.clean_after(message.clean, load.device)
        self.send(p.Done(message.job, {**result_value, "windows": result.windows, **cleaned}))

    def do_translate(self, message: p.Translate) -> None:
        load, translator = self.model(message.model, "translate")

        def on_batch(done: int, total: int) -> None:
            self.progress(done / total if total else 1.0)
            self.safe_point()

        lines = translator.translate(
            list(message.lines), message.src, message.tgt, message.batch_size, on_batch=on_batch
        )
        cleaned = self.clean_after(message.clean, load.device)
        self.send(p.Done(message.job, {"lines": [str(line) for line in lines], **cleaned}))

    def clean_after(self, wanted: bool, device: str) -> dict[str, float | None]:
        """Free what a stage left cached: on CUDA the allocator's cache goes back to the
        device for other processes (the models stay loaded); on the CPU the heap is trimmed."""
        if not wanted:
            return {"cleaned": None}
        from . import memory

        started = time.perf_counter()
        memory.clean(device)
        return {"cleaned": time.perf_counter() - started}

    def do_call(self, message: p.Call) -> None:
        module, _, name = message.target.partition(":")
        function = getattr(importlib.import_module(module), name)
        result = function(window=self.window, progress=self.progress, **message.kwargs)
        self.send(p.Done(message.job, p.plain(result)))

    def model(self, key: str, kind: str) -> tuple[p.Load, Any]:
        entry = self.models.get(key)
        if entry is None or entry[0].kind != kind:
            raise BadRequest(f"no {kind} model {key!r} loaded in this worker")
        return entry[0], entry[1]

    def stats(self) -> p.Stats:
        from . import memory

        models = tuple((key, entry[2]) for key, entry in self.models.items())
        return p.Stats(os.getpid(), memory.rss_bytes(), models, _gpu_bytes())


def transcribe_options(fields: dict[str, Any]) -> Any:
    from subq.engine import asr

    fields = dict(fields)
    if "temperature" in fields:
        fields["temperature"] = tuple(fields["temperature"])
    return asr.TranscribeOptions(**fields)


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, one-line message) for an exception: the engine never sees the exception."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())[:500] or name
    low = text.lower()
    if name == "OutOfMemoryError" or "out of memory" in low:
        return p.OOM, text
    if "cuda error" in low or "device-side assert" in low or "illegal memory access" in low:
        return p.CUDA, text
    kinds = {"MediaError": p.MEDIA, "ModelLoadError": p.MODEL, "TranslationError": p.TRANSLATION}
    if name in kinds:
        return kinds[name], text
    if isinstance(exc, OSError):
        return p.OS, text
    if isinstance(exc, BadRequest):
        return p.BAD_REQUEST, text
    return p.INTERNAL, f"{name}: {text}"


def _gpu_bytes() -> int | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return sum(torch.cuda.memory_reserved(i) for i in range(torch.cuda.device_count()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="subq.engine.worker_main")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--local", default="cpu")
    parser.add_argument("--log")
    parser.add_argument("--spawned", type=float, default=None)
    parser.add_argument("--preload", action="append", default=[], choices=sorted(PRELOADS))
    parser.add_argument("--no-pdeathsig", action="store_true")
    args = parser.parse_args(argv)

    _redirect_output(args.log)
    _die_with_parent(args.parent, not args.no_pdeathsig)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s worker {os.getpid()} ({args.device}) %(message)s",
    )
    from multiprocessing.connection import Connection

    server = Server(Connection(args.fd), {args.device: args.local})
    for what in args.preload:
        for module in PRELOADS[what]:
            importlib.import_module(module)
    libraries = tuple(m for m in MODEL_LIBRARIES if m in sys.modules)
    seconds = time.time() - args.spawned if args.spawned else 0.0
    server.send(p.Ready(os.getpid(), seconds, libraries))
    log.info("ready in %.2f s (%s)", seconds, ", ".join(libraries) or "no model library yet")
    server.serve()
    log.info("quit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
