"""Probing untrusted media outside the subq process, in one long-lived reader child.

Why: a demuxer that crashes on a crafted file would take the app or the whole batch with
it, and one that hangs has no timeout in-process. Here a probe that crashes or hangs costs
only its file: the child is killed, the request fails with one line (a `MediaError`), and
the next request starts a fresh child. One child serves every request, so probing 500 files
pays the Python start and `import av` once, not once a file.

The channel is the child's stdin and a private copy of its stdout, one JSON line per request
(`{"path": ...}`, or `{"path": ..., "speech": [[start, end], ...]}` for where the VAD hears
speech, speech_check.py) and per answer (`{"info": {...}}`, `{"speech": [...]}` or
`{"error": "..."}`). The child's fds
1 and 2 go to the log, so nothing a C library prints can garble an answer. It runs in its
own session (the user's Ctrl-C reaches subq, never the reader mid-file), with subq's
environment, and ends by itself when subq goes: at the end of its stdin, or, if it is stuck
in a file then, through a watchdog thread that sees its parent gone.

`probe_isolated` uses one Prober shared by the whole process (the engine's pipeline and the
app's duration column), its child ended at exit. A shared one rather than one per Engine
because the app probes too, and one warm child is cheapest for both; a request holds the
child for one file only, so neither side waits for more than one probe of the other's.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .media import MediaError, MediaInfo

# A header read takes milliseconds; a slow network share or a spun-down disk can take a few
# seconds, so 20 s without an answer is a hung demuxer, while a batch that meets several
# such files still loses minutes, not hours. SUBQ_PROBE_TIMEOUT overrides it (tests, shares).
PROBE_TIMEOUT = 20.0
# A fresh child pays the Python start and `import av`: well under a second, but a machine
# busy loading models can take many times that, which is no fault of the file probed.
START_TIMEOUT = 60.0


def probe_timeout() -> float:
    value = os.environ.get("SUBQ_PROBE_TIMEOUT")
    with contextlib.suppress(ValueError):
        if value and float(value) > 0:
            return float(value)
    return PROBE_TIMEOUT


class _Stuck(Exception):
    """The child said nothing within the time it had."""


@dataclass
class _Child:
    popen: subprocess.Popen[bytes]
    env: dict[str, str]  # what it was started with: a changed os.environ means a new child
    stopped: bool = False  # killed by `close`, so its end is no fault of the file


class Prober:
    """Probes files in a reader child process, one request at a time.

    Ownership: any thread may call `probe`; one lock is held for a whole request (write the
    path, read the answer), so the channel is never shared and callers queue behind each
    other, at worst for one timeout. Only a request, under that lock, starts or replaces
    the child. `close` may come from any thread (atexit too): it kills the child at once,
    even mid-request (that request fails, saying so), and a later `probe` starts a new one.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout  # None: SUBQ_PROBE_TIMEOUT, else PROBE_TIMEOUT
        self._lock = threading.Lock()
        self._child: _Child | None = None
        _live.add(self)

    @property
    def pid(self) -> int | None:
        """The child's pid while one runs (for tests and the curious)."""
        child = self._child
        return child.popen.pid if child is not None and child.popen.poll() is None else None

    def probe(self, path: str | Path, timeout: float | None = None) -> MediaInfo:
        """`media.probe(path)`, run in the child; every failure is a one-line MediaError."""
        path = Path(path)
        seconds = timeout or self.timeout or probe_timeout()
        request = (json.dumps({"path": str(path)}) + "\n").encode()
        with self._lock:
            answer = self._ask(path, request, seconds)
        if "error" in answer:
            raise MediaError(str(answer["error"]).replace("\n", " "))
        info = answer["info"]
        return MediaInfo(
            path=path,
            duration=info["duration"],
            size=info["size"],
            mtime=info["mtime"],
            container=info["container"],
            subtitles=tuple(info.get("subtitles", ())),
        )

    def speech(self, path: str | Path, spans: list[tuple[float, float]]) -> list[float] | None:
        """speech_check.speech_shares(path, spans), run in the child: the file is decoded
        to the last span, so the time allowed grows with it (at 20x real time at least)."""
        path = Path(path)
        seconds = (self.timeout or probe_timeout()) + max(e for _s, e in spans) / 20
        request = json.dumps({"path": str(path), "speech": [list(s) for s in spans]})
        with self._lock:
            answer = self._ask(path, (request + "\n").encode(), seconds)
        if "error" in answer:
            raise MediaError(str(answer["error"]).replace("\n", " "))
        shares = answer["speech"]
        return None if shares is None else [float(x) for x in shares]

    def close(self) -> None:
        """End the child (any thread); a request in flight fails, saying subq is closing."""
        child = self._child
        if child is not None:
            child.stopped = True
            _kill(child.popen)
        with self._lock:  # once a request in flight has seen the end
            child = self._child
            if child is not None:
                child.stopped = True
                self._end(child)

    # -- one request, under the lock ---------------------------------------------------
    def _ask(self, path: Path, request: bytes, seconds: float) -> dict[str, Any]:
        for fresh in (False, True):
            child = self._ready(path)
            if _send(child.popen, request):
                break
            self._end(child)  # it died after its last answer, before reading this path
            if child.stopped:
                raise MediaError(f"{path}: probing was stopped (subq is closing)")
            if fresh:
                raise MediaError(f"{path}: the media reader stopped before reading the file")
        try:
            line = _read_line(child.popen, seconds)
        except _Stuck:
            self._end(child)
            raise MediaError(
                f"{path}: probing the file hung (no answer in {seconds:g} s); reader stopped"
            ) from None
        if line is None:
            self._end(child)
            if child.stopped:
                raise MediaError(f"{path}: probing was stopped (subq is closing)")
            how = _describe(child.popen.returncode)
            raise MediaError(f"{path}: probing the file crashed the reader ({how})")
        try:
            answer = json.loads(line)
            if not isinstance(answer, dict) or not {"error", "info", "speech"} & set(answer):
                raise ValueError(line)
        except ValueError:
            self._end(child)
            raise MediaError(f"{path}: the media reader's answer could not be read") from None
        return answer

    def _ready(self, path: Path) -> _Child:
        """The running child, started (or replaced) first where needed."""
        env = dict(os.environ)
        child = self._child
        if child is not None and (child.popen.poll() is not None or child.env != env):
            self._end(child)  # died idle, or subq's environment changed (tests' faults)
            child = None
        if child is None:
            child = self._child = _Child(_start(env, path), env)
            try:
                ready = _read_line(child.popen, START_TIMEOUT)
                how = "" if ready and b'"ready"' in ready else "it ended: {}"
            except _Stuck:
                how = f"no answer in {START_TIMEOUT:g} s"
            if how:
                self._end(child)
                if child.stopped:
                    raise MediaError(f"{path}: probing was stopped (subq is closing)")
                how = how.format(_describe(child.popen.returncode))
                raise MediaError(f"{path}: cannot start the media reader ({how})")
        return child

    def _end(self, child: _Child) -> None:
        _kill(child.popen)
        for pipe in (child.popen.stdin, child.popen.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if self._child is child:
            self._child = None


def _start(env: dict[str, str], path: Path) -> subprocess.Popen[bytes]:
    from .worker_env import DEFAULT_LOG, log_target

    argv = [sys.executable, "-P", "-m", __spec__.name, "--parent", str(os.getpid())]
    log = log_target(DEFAULT_LOG)
    err: Any = subprocess.DEVNULL
    if log is not None:
        with contextlib.suppress(OSError):
            err = open(log, "ab")  # noqa: SIM115 - closed below, the child keeps its copy
    try:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            bufsize=0,
            start_new_session=True,
        )
    except OSError as exc:
        raise MediaError(f"{path}: cannot start the media reader: {exc}") from None
    finally:
        if err is not subprocess.DEVNULL:
            err.close()


def _send(popen: subprocess.Popen[bytes], request: bytes) -> bool:
    assert popen.stdin is not None
    try:
        popen.stdin.write(request)
        popen.stdin.flush()
    except OSError:
        return False
    return True


def _read_line(popen: subprocess.Popen[bytes], seconds: float) -> bytes | None:
    """One line from the child; None at its end (it died); _Stuck after `seconds` of quiet."""
    assert popen.stdout is not None
    fd = popen.stdout.fileno()
    deadline = time.monotonic() + seconds
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Stuck
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            data += chunk
    return data


def _kill(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        popen.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(5)


def _describe(code: int | None) -> str:
    """'signal 11, SIGSEGV' or 'exit status 3': how the child ended."""
    if code is None:
        return "still running"
    if code >= 0:
        return f"exit status {code}"
    try:
        return f"signal {-code}, {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


_live: weakref.WeakSet[Prober] = weakref.WeakSet()
_shared: Prober | None = None
_shared_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    """No reader outlives subq's normal exit (a hard exit leaves it to the child's watchdog)."""
    for prober in list(_live):
        prober.close()


def shared() -> Prober:
    """The process's one Prober, made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Prober()
        return _shared


def probe_isolated(path: str | Path, timeout: float | None = None) -> MediaInfo:
    """Probe `path` in the shared reader child: a crash or a hang fails this file alone."""
    return shared().probe(path, timeout)


def speech_isolated(path: str | Path, spans: list[tuple[float, float]]) -> list[float] | None:
    """`Prober.speech` in the shared reader child; None where the VAD cannot tell or the
    file cannot be read again (the clean-up falls back to the model's no-speech probability)."""
    if not spans:
        return []
    try:
        return shared().speech(path, spans)
    except MediaError as exc:
        logging.getLogger("subq.engine").warning("speech check: %s", exc)
        return None


# -- the child's side ------------------------------------------------------------------
def _watch_parent(parent: int) -> None:
    """End this child once subq is gone, even while a file holds the main thread."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _answer(path: Path, spans: list[Any] | None = None) -> dict[str, Any]:
    from . import faults, media

    try:
        faults.maybe_fail("probe", str(path))
        if spans is not None:
            from .speech_check import speech_shares

            return {"speech": speech_shares(path, [(float(a), float(b)) for a, b in spans])}
        info = media.probe(path)
    except MediaError as exc:
        return {"error": str(exc)}
    except OSError as exc:
        return {"error": f"{path}: cannot read: {exc.strerror or exc}"}
    except Exception as exc:  # a reader bug fails this file, not the reader
        first = (str(exc).strip().splitlines() or [""])[0]
        return {"error": f"{path}: cannot read media: {type(exc).__name__}: {first}"}
    fields = ("duration", "size", "mtime", "container", "subtitles")
    return {"info": {name: getattr(info, name) for name in fields}}


def main() -> None:
    parser = argparse.ArgumentParser(description="subq's media reader child (internal)")
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args()
    channel = os.fdopen(os.dup(1), "wb")  # buffered: flush writes a long answer whole
    os.dup2(2, 1)  # whatever prints to stdout lands in the log, never inside an answer
    threading.Thread(target=_watch_parent, args=(args.parent,), daemon=True).start()
    import av  # noqa: F401 - paid once here, outside the first request's timeout

    from . import media  # noqa: F401

    def send(answer: dict[str, Any]) -> None:
        try:
            channel.write((json.dumps(answer) + "\n").encode())
            channel.flush()
        except OSError:  # subq is gone
            os._exit(0)

    send({"ready": os.getpid()})
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            path = Path(request["path"])
        except (ValueError, KeyError, TypeError):
            send({"error": "a request the media reader could not read"})
            continue
        send(_answer(path, request.get("speech")))


if __name__ == "__main__":
    main()
