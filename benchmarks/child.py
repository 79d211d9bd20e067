"""Processes the benchmarks start, so each variant gets a fresh process (peak RSS is its own).

python benchmarks/child.py batch --settings '{"cleanup": "stage"}' --state S --json OUT F...
    one subq Engine over the files; prints wall time, RSS figures and the time spent in
    memory.clean (what the cleanup policy costs), as JSON; --clean trim-only swaps in
    the proposed CPU cleanup (malloc_trim without a full gc.collect)
python benchmarks/child.py fwloop --out DIR [--beam-size 5] F...
    the faster-whisper peer: load WhisperModel once and loop over the files, writing SRT
    (faster-whisper's own defaults unless told: beam 5, best_of 5, no VAD, no word times)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def batch(args: argparse.Namespace) -> int:
    import common as c
    from subq.engine import memory
    from subq.engine.settings import Settings

    spent = {"clean_seconds": 0.0, "clean_calls": 0}
    original = memory.clean

    def trim_only(device: str) -> None:
        """The proposed CPU cleanup: malloc_trim without the full gc.collect()."""
        if device.startswith("cuda"):
            original(device)
        else:
            memory.malloc_trim()

    clean = trim_only if args.clean == "trim-only" else original

    def timed_clean(device: str) -> None:
        t0 = time.perf_counter()
        clean(device)
        spent["clean_seconds"] += time.perf_counter() - t0
        spent["clean_calls"] += 1

    memory.clean = timed_clean  # the pipeline calls memory.clean through the module
    settings = Settings.from_mapping({"keep_alive": -1, **json.loads(args.settings)}).validate()
    run = c.engine_batch(
        [Path(f) for f in args.files], settings, Path(args.state), memory_interval=args.interval
    )
    out = {
        "wall": run.wall,
        "rss_done": run.rss_done,
        "rss_samples": run.rss_samples,
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "stage_times": [dict(j.stage_times) for j in run.jobs],
        "loads": run.loads,
        **spent,
    }
    Path(args.json).write_text(json.dumps(out), encoding="utf-8")
    return 0


def fwloop(args: argparse.Namespace) -> int:
    from faster_whisper import WhisperModel
    from subq.engine.bundled import bundled_model_dir

    model = WhisperModel(str(bundled_model_dir()), device="cpu", compute_type=args.compute_type)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"beam_size": args.beam_size} if args.beam_size else {}
    for name in args.files:
        segments, _info = model.transcribe(name, language="en", **extra)
        lines = []
        for i, s in enumerate(segments, 1):
            lines += [str(i), f"{_ts(s.start)} --> {_ts(s.end)}", s.text.strip(), ""]
        (out / (Path(name).stem + ".srt")).write_text("\n".join(lines), encoding="utf-8")
    return 0


def _ts(t: float) -> str:
    ms = round(t * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("batch")
    b.add_argument("--settings", default="{}")
    b.add_argument("--state", required=True)
    b.add_argument("--json", required=True)
    b.add_argument("--interval", type=float, default=0.1)
    b.add_argument(
        "--clean",
        choices=("as-is", "trim-only"),
        default="as-is",
        help="trim-only: memory.clean without gc.collect() on the CPU (proposed)",
    )
    b.add_argument("files", nargs="+")
    f = sub.add_parser("fwloop")
    f.add_argument("--out", required=True)
    f.add_argument("--beam-size", type=int)
    f.add_argument("--compute-type", default="int8")
    f.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    return batch(args) if args.mode == "batch" else fwloop(args)


if __name__ == "__main__":
    sys.exit(main())
