"""Pause latency: time from engine.pause() to the job's PAUSED event while long.mp3
transcribes, paused at different points of a window, resumed each time in between.

The engine checks for commands before every decoding window, so the worst case is about one
window's work; the table shows the windows' own durations next to the latencies (the gaps
between successive window starts, from the engine's progress events).

    python benchmarks/bench_pause.py --quick        # 3 tries per backend
    python benchmarks/bench_pause.py                # 8 tries per backend
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import common as c

OFFSETS = (0.3, 2.2, 1.1, 3.4, 0.7, 2.8, 1.6, 4.0)  # seconds into a (re)started transcription


def measure(backend: str, tries: int, tmp: Path) -> dict[str, Any]:
    from subq.engine.events import JobChanged, StageProgressed
    from subq.engine.jobs import JobState, Stage
    from subq.engine.runner import Engine
    from subq.engine.settings import Settings

    settings = Settings(backend=backend, keep_alive=-1, output_dir=str(tmp / f"out-{backend}"))
    c.warm_up(settings, tmp / backend)
    engine = Engine(settings, tmp / f"{backend}.db", whole_queue=False)
    lock = threading.Lock()
    transcribe_started = threading.Event()
    paused = threading.Event()
    finished = threading.Event()
    window_starts: list[float] = []
    state: dict[str, Any] = {"paused_at": None}

    def listen(event: Any) -> None:
        now = time.perf_counter()
        with lock:
            if isinstance(event, StageProgressed) and event.stage == Stage.TRANSCRIBE:
                if event.fraction < 1.0:
                    window_starts.append(now)
                transcribe_started.set()
            elif isinstance(event, JobChanged):
                if event.job.state == JobState.PAUSED:
                    state["paused_at"] = now
                    window_starts.append(float("nan"))  # no gap across a pause
                    paused.set()
                elif event.job.state == JobState.DONE:
                    window_starts.append(float("nan"))
                    finished.set()

    engine.subscribe(listen)
    engine.start()
    copies = 0

    def add_copy() -> None:
        nonlocal copies
        copies += 1
        target = tmp / "inputs" / f"long-{backend}-{copies}.mp3"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(c.DATA / "long.mp3", target)
        finished.clear()
        engine.add([str(target)])

    latencies: list[float] = []

    def go_on(action: Any) -> None:
        """Resume or add, clearing the flags first so no event of the next run is missed."""
        transcribe_started.clear()
        paused.clear()
        action()

    go_on(add_copy)
    try:
        attempt = 0
        while len(latencies) < tries and attempt < tries * 3:
            offset = OFFSETS[attempt % len(OFFSETS)]
            attempt += 1
            deadline = time.monotonic() + 300
            while not transcribe_started.wait(0.05):
                if finished.is_set():  # ended without another window: next copy
                    go_on(add_copy)
                if time.monotonic() > deadline:
                    raise RuntimeError("transcription did not start")
            time.sleep(offset)
            if finished.is_set():
                go_on(add_copy)
                continue
            asked = time.perf_counter()
            engine.pause()
            while not paused.wait(0.05):
                if finished.is_set() or time.perf_counter() - asked > 120:
                    break
            if not paused.is_set():
                if not finished.is_set():
                    raise RuntimeError("no PAUSED event within 120 s")
                engine.resume()  # it finished before reaching a pause point: try again
                go_on(add_copy)
                continue
            latencies.append(state["paused_at"] - asked)
            print(
                f"{backend}: pause {len(latencies)} after {offset:.1f} s: {latencies[-1]:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            go_on(engine.resume)
    finally:
        engine.shutdown(timeout=60)
        engine.store.close()
    gaps = [b - a for a, b in itertools.pairwise(window_starts) if a == a and b == b]
    return {"latencies": latencies, "window_gaps": gaps}


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    p.add_argument("--tries", type=int, help="pauses per backend (default: quick 4, full 8)")
    args = p.parse_args(argv)
    tries = args.tries or (3 if args.quick else 8)
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-pause-"))
    c.isolate(tmp)
    started = time.perf_counter()
    c.bundled_checkpoint()
    runs = {backend: measure(backend, tries, tmp) for backend in ("whisper", "faster-whisper")}
    result: dict[str, Any] = {
        "name": "pause",
        "machine": c.machine(),
        "tries": tries,
        "runs": runs,
        "command": c.command_line("bench_pause.py", args, f"--tries {tries}" if args.tries else ""),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    rows = []
    for backend, v in r["runs"].items():
        lat, gaps = v["latencies"], v["window_gaps"]
        rows.append(
            [
                backend,
                len(lat),
                c.fmt_s(c.median(lat)),
                c.fmt_s(max(lat)),
                c.fmt_s(c.median(gaps)),
                c.fmt_s(max(gaps) if gaps else None),
                c.fmt_x(max(lat) / max(gaps)) if gaps else "n/a",
            ]
        )
    return "\n".join(
        [
            "long.mp3 (69 s, 3 windows) on the CPU, tiny.en; pause() called 0.3-4 s after the "
            "transcription (re)started, resumed after each pause. A window is the time between "
            "two successive safe points in the same run (decode + word alignment of one 30 s "
            "window); absolute seconds follow the shared machine's load, the ratio does not.",
            "",
            c.table(
                [
                    "backend",
                    "pauses",
                    "median latency",
                    "worst latency",
                    "median window",
                    "longest window",
                    "worst latency / longest window",
                ],
                rows,
            ),
            "",
            "Latencies (s): "
            + "; ".join(
                f"{b}: " + ", ".join(f"{x:.2f}" for x in v["latencies"])
                for b, v in r["runs"].items()
            ),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
