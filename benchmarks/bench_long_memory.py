"""Figure 8, peak memory on long files: peak RSS of one transcription at 5, 30 and 120 minutes.

Each measured run is a fresh process, one input made by looping long.mp3's packets (PyAV
remux, no re-encode: 120 minutes in a second), tiny.en on the CPU, one run per backend and
length. The process tree's RSS (sum over the process and any children) is sampled every
50 ms; the kernel's own peak of the largest process (wait4's ru_maxrss) is reported beside
it, since a sampler can miss a short spike.

Two ways to drive it (`--via`):
- `direct` (default): a fresh Python process loads the backend (`asr.load_backend`), opens
  the file with `media.open_audio` (decoded forward as it is read) and calls
  `asr.run_backend` on that source: the path the pipeline takes once it passes a source.
- `run`: a fresh `subq run` on a fresh empty state file (`--state`): whatever the pipeline
  does today (it decoded whole files into an array when this was written).

Before streaming, the whole-file spike came before the first progress (decoding, then the
libraries' log-mel of the whole file), so by default a run stops once transcription has
passed `--windows` windows of 30 s (`direct`: the window hook raises; `run`: SIGTERM, subq
checkpoints and exits). `--full` runs to the end.

    python benchmarks/bench_long_memory.py --quick     # 5 and 10 minutes, both backends
    python benchmarks/bench_long_memory.py             # 5, 30 and 120 minutes, both backends

To measure another commit, put its tree where `import subq` finds it first:
`git archive REV engine tui | tar -x -C DIR/subq` and run with `PYTHONPATH=DIR`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common as c

sys.path.insert(0, str(c.ROOT / "tests"))
from long_media import loop_clip

CLIP = "long.mp3"
MIB = 1 << 20
WINDOW = 30.0


@dataclass
class Run:
    backend: str
    minutes: float
    peak_tree: int = 0  # bytes, sampled
    peak_kernel: int = 0  # bytes, ru_maxrss of the largest process
    peak_before_progress: int = 0  # sampled, up to the first transcription progress
    first_progress_at: float | None = None  # seconds after start
    stopped_at_audio: float | None = None  # seconds of audio transcribed when stopped
    wall: float = 0.0
    finished: bool = False
    returncode: int = 0


def tree_rss(proc: Any) -> int:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def transcribed(events: Path, seconds: float, seen: int) -> tuple[float | None, int]:
    """Audio seconds transcribed per the newest progress event past byte `seen`."""
    done = None
    with open(events, "rb") as f:
        f.seek(seen)
        data = f.read()
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        event = json.loads(line)
        if event.get("type") == "progress" and event.get("stage") == "transcribe":
            done = float(event["fraction"]) * seconds
    return done, seen + end


def measure(
    file: Path, seconds: float, backend: str, tmp: Path, env: dict[str, str], args: Any
) -> Run:
    """One fresh `subq run` on `file`; stopped after `args.windows` windows unless --full."""
    import psutil

    folder = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=tmp))
    events = folder / "events.jsonl"
    events.touch()
    if args.via == "direct":
        windows = "0" if args.full else str(args.windows)
        cmd = [sys.executable, __file__, "--child", backend, str(file), str(events), windows]
    else:
        cmd = [c.bin_path("subq"), "run", str(file), "--backend", backend, "--device", "cpu"]
        cmd += ["--state", str(folder / "state.db"), "--output-dir", str(folder)]
        cmd += ["--events", str(events), "-q"]
    run = Run(backend, seconds / 60)
    started = time.perf_counter()
    log = open(folder / "output.txt", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    watched = psutil.Process(proc.pid)
    stop_at = None if args.full or args.via == "direct" else args.windows * WINDOW
    usage: list[Any] = []

    def reap() -> None:
        _pid, status, rusage = os.wait4(proc.pid, 0)
        usage.extend([os.waitstatus_to_exitcode(status), rusage])

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    seen, stopping = 0, False
    while reaper.is_alive():
        rss = tree_rss(watched)
        run.peak_tree = max(run.peak_tree, rss)
        done, seen = transcribed(events, seconds, seen)
        if done is not None and run.first_progress_at is None:
            run.first_progress_at = time.perf_counter() - started
        if run.first_progress_at is None:
            run.peak_before_progress = run.peak_tree
        if not stopping and stop_at is not None and done is not None and done >= stop_at:
            run.stopped_at_audio = done
            proc.send_signal(signal.SIGTERM)
            stopping = True
        if time.perf_counter() - started > args.timeout and not stopping:
            proc.send_signal(signal.SIGTERM)
            stopping = True
        time.sleep(0.05)
    reaper.join()
    log.close()
    run.wall = time.perf_counter() - started
    run.returncode, rusage = usage
    run.peak_kernel = rusage.ru_maxrss * 1024
    run.finished = not stopping and run.returncode == 0
    if args.via == "direct" and run.finished:
        done, _seen = transcribed(events, seconds, 0)
        run.finished = args.full
        run.stopped_at_audio = None if args.full else done
    if not stopping and run.returncode != 0:
        raise SystemExit(
            f"{backend} {file.name} failed:\n{(folder / 'output.txt').read_text()[-2000:]}"
        )
    return run


def child(backend: str, file: str, events: str, windows: int) -> int:
    """`--via direct`: transcribe `file` from a streamed source, writing progress events
    like `subq run --events`; stop at the start of window `windows` + 1 (0: never)."""
    from subq.engine import asr, media

    model = asr.load_backend(backend, "tiny.en", "cpu")
    source = media.open_audio(Path(file))
    seen = 0

    def on_window(_checkpoint: asr.Checkpoint, fraction: float) -> None:
        nonlocal seen
        with open(events, "a") as f:
            f.write(json.dumps({"type": "progress", "stage": "transcribe", "fraction": fraction}))
            f.write("\n")
        seen += 1
        if windows and seen > windows:
            raise RuntimeError("enough windows")

    options = asr.TranscribeOptions(language="en")
    with contextlib.suppress(asr.TranscriptionStopped):
        asr.run_backend(backend, model, source, options, on_window=on_window)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[2], argv[3], int(argv[4]))
    p = c.base_parser(__doc__)
    p.add_argument("--minutes", help="comma-separated lengths (default: quick 5,10; full 5,30,120)")
    p.add_argument("--backends", default="faster-whisper,whisper", help="comma-separated")
    p.add_argument(
        "--windows", type=int, default=3, help="stop a run after this many 30 s windows (default 3)"
    )
    p.add_argument("--full", action="store_true", help="run every file to the end")
    p.add_argument("--via", choices=("direct", "run"), default="direct", help="see the docstring")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    args = p.parse_args(argv)
    minutes = [
        float(m) for m in (args.minutes or ("5,10" if args.quick else "5,30,120")).split(",")
    ]
    backends = args.backends.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-long-memory-"))
    env = c.isolate(tmp)
    started = time.perf_counter()
    c.bundled_checkpoint()
    runs: list[Run] = []
    for m in minutes:
        file = tmp / f"long-{m:g}min.mp3"
        seconds = loop_clip(c.DATA / CLIP, file, m)
        for backend in backends:
            print(f"{backend}: {m:g} minutes", file=sys.stderr, flush=True)
            runs.append(measure(file, seconds, backend, tmp, env, args))
            print(f"  {asdict(runs[-1])}", file=sys.stderr, flush=True)
        file.unlink()
    extra = " ".join(
        x
        for x in (
            f"--minutes {args.minutes}" if args.minutes else "",
            f"--backends {args.backends}" if args.backends != p.get_default("backends") else "",
            f"--windows {args.windows}" if args.windows != 3 else "",
            "--full" if args.full else "",
            "--via run" if args.via == "run" else "",
        )
        if x
    )
    result: dict[str, Any] = {
        "name": "long_memory",
        "machine": c.machine(),
        "runs": [asdict(r) for r in runs],
        "command": c.command_line("bench_long_memory.py", args, extra),
        "windows": None if args.full else args.windows,
        "via": args.via,
        "pythonpath": os.environ.get("PYTHONPATH"),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    rows = []
    shortest = {}
    for v in r["runs"]:
        shortest.setdefault(v["backend"], v)
        base = shortest[v["backend"]]
        per_min = (
            (v["peak_kernel"] - base["peak_kernel"]) / MIB / (v["minutes"] - base["minutes"])
            if v["minutes"] > base["minutes"]
            else None
        )
        rows.append(
            [
                v["backend"],
                f"{v['minutes']:.1f}",
                f"{v['peak_kernel'] / MIB:.0f} MiB",
                f"{v['peak_tree'] / MIB:.0f} MiB",
                f"{v['peak_before_progress'] / MIB:.0f} MiB",
                f"{(v['peak_kernel'] - base['peak_kernel']) / MIB:+.0f} MiB",
                "n/a" if per_min is None else f"{per_min:.1f}",
                "to the end" if v["finished"] else f"stopped at {v['stopped_at_audio'] or 0:.0f} s",
            ]
        )
    scope = (
        "each run to the end"
        if r["windows"] is None
        else f"each run stopped after {r['windows']} windows of 30 s"
    )
    how = (
        "`subq run`"
        if r.get("via") == "run"
        else "process (`asr.run_backend` on `media.open_audio(FILE)`)"
    )
    return "\n".join(
        [
            f"One fresh {how} per row, tiny.en on the CPU, {scope}. Peak RSS: the kernel's "
            "(ru_maxrss of the largest process) and the process tree's, sampled every 50 ms.",
            "",
            c.table(
                [
                    "backend",
                    "minutes",
                    "peak RSS",
                    "peak RSS (tree, sampled)",
                    "sampled peak before first progress",
                    "vs shortest",
                    "MiB per minute",
                    "run",
                ],
                rows,
            ),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
