"""Tiny worker handlers and stand-in parent processes for tests/test_worker.py.

Handlers run inside a worker through a `Call` request (the tests put this folder on the
worker's PYTHONPATH); the `parent_*` functions run as a separate Python process
(`python worker_helpers.py NAME ...`) that plays the engine, so a test can kill it or signal
its process group without touching pytest.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
MODEL_LIBRARIES = ("torch", "ctranslate2", "whisper", "faster_whisper", "transformers")
MAPPED = ("libtorch", "libctranslate2", "libc10", "libcudart")


# -- handlers (run in the worker) ---------------------------------------------------------
def spin(window: Any, progress: Any, windows: int = 100, seconds: float = 0.05) -> dict:
    """A call with a safe point every `seconds`, like a transcription's windows."""
    for i in range(windows):
        window({"seek": float(i), "segments": []}, i / windows)
        time.sleep(seconds)
    return {"windows": windows}


def nap(window: Any, progress: Any, seconds: float = 60.0) -> str:
    """A call with no safe point at all (a long native call)."""
    time.sleep(seconds)
    return "rested"


def shout(window: Any, progress: Any, text: str) -> str:
    """Write on fds 1 and 2 the ways a library might: print, sys.stderr, raw fd writes."""
    print(text, flush=True)
    print(text, file=sys.stderr, flush=True)
    os.write(1, f"{text} fd1\n".encode())
    os.write(2, f"{text} fd2\n".encode())
    return "shouted"


# -- stand-in parents ---------------------------------------------------------------------
def _worker(**kw: Any) -> Any:
    from subq.engine.worker import WorkerProcess

    return WorkerProcess("cpu", threads=1, extra_env={"PYTHONPATH": str(HERE)}, **kw)


def _say(value: Any) -> None:
    print(json.dumps(value), flush=True)


def parent_imports(clip: str, log: str) -> None:
    """Transcribe `clip` in a worker; report what this process and the worker imported."""
    from subq.engine import worker_protocol as p

    worker = _worker(log=log)
    worker.wait_ready()
    key = worker.request(p.Load("asr", "tiny.en", "cpu", "faster-whisper")).key
    seen: dict[str, Any] = {}

    def look(message: Any) -> None:  # while the transcription runs
        if isinstance(message, p.Checkpointed) and not seen:
            seen["modules"] = [m for m in MODEL_LIBRARIES if m in sys.modules]
            seen["mapped"] = _mapped(os.getpid())
            seen["worker_mapped"] = _mapped(worker.pid)

    done = worker.request(p.Transcribe("j", key, clip, {"language": "en"}), on_message=look)
    shouted = worker.request(p.Call("s", "worker_helpers:shout", {"text": "WORKER-NOISE"}))
    seen["modules_after"] = [m for m in MODEL_LIBRARIES if m in sys.modules]
    seen["text"] = " ".join(seg[2] for seg in done.result["segments"])
    seen["shouted"] = shouted.result
    seen["exit"] = worker.stop().how
    _say(seen)


def _mapped(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/maps").read_text()
    return sorted({lib for lib in MAPPED if lib in text})


def parent_orphans() -> None:
    """Start a worker busy in a call without safe points (only PR_SET_PDEATHSIG can end it
    when this process dies) and an idle one without PDEATHSIG (only end-of-pipe can), say
    their pids, and wait to be killed."""
    from subq.engine import worker_protocol as p

    busy, idle = _worker(log=None), _worker(log=None, pdeathsig=False)
    busy.wait_ready()
    idle.wait_ready()
    busy.send(p.Call("nap", "worker_helpers:nap", {"seconds": 120}))
    _say({"busy": busy.pid, "idle": idle.pid})
    time.sleep(300)


def parent_interrupted() -> None:
    """Like the engine: take SIGINT and SIGHUP itself, then check its worker still serves."""
    from subq.engine import worker_protocol as p

    caught: list[int] = []
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: caught.append(number))
    worker = _worker(log=None)
    worker.wait_ready()
    _say({"worker": worker.pid})
    sys.stdin.readline()  # the test signals, then writes a line
    stats = worker.request(p.GetStats(), timeout=10)
    _say({"caught": caught, "stats_pid": getattr(stats, "pid", None), "exit": worker.stop().how})


if __name__ == "__main__":
    globals()["parent_" + sys.argv[1]](*sys.argv[2:])
