"""Figure 1, model reuse: a batch of N files in one engine vs a fresh model load per file.

In this process (after a warm-up, so only the model load differs): one Engine for all N
files vs a new Engine per file. As whole processes (what a user runs): `subq run` with all
N files vs `subq run` once per file, and the same per-file loop with numba's JIT cache on
(openai-whisper compiles its word-timing DTW on first use in every process; the cached
variant shows what a one-line change in engine/asr.py would save).

    python benchmarks/bench_reuse.py --quick        # N = 3 short clips, 1 round, no JIT cache
    python benchmarks/bench_reuse.py                # N = 6, 3 rounds
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

NUMBA_CACHED_RUN = (
    "import sys, whisper.timing as t; t.dtw_cpu.enable_caching(); t.backtrace.enable_caching();"
    " from subq.tui.cli import main; sys.exit(main(sys.argv[1:]))"
)


WHISPER = ("--backend", "whisper")  # the backend these figures were measured with


def whisper_settings(out: Path) -> Any:
    from subq.engine.settings import Settings  # imported after c.isolate() set the dirs

    return Settings(backend="whisper", keep_alive=-1, output_dir=str(out))


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    p.add_argument("--files", type=int, help="N files (default: quick 3, full 6)")
    p.add_argument(
        "--jit-cache",
        action="store_true",
        help="also in --quick: the per-file run with numba's JIT cache on",
    )
    args = p.parse_args(argv)
    rounds = c.rounds(args)
    n = args.files or (3 if args.quick else 6)
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-reuse-"))
    env = c.isolate(tmp)
    env["NUMBA_CACHE_DIR"] = str(tmp / "numba-cache")
    from subq.engine.settings import Settings
    from subq.engine.store import Store

    started = time.perf_counter()
    c.bundled_checkpoint()
    files = c.copies(tmp / "inputs", n)
    audio = c.audio_seconds(files)
    settings = Settings(backend="whisper", keep_alive=-1)
    c.warm_up(settings, tmp)
    subq = c.bin_path("subq")
    variants = ["engine-batch", "engine-per-file", "run-batch", "run-per-file"]
    if not args.quick or args.jit_cache:
        variants.append("run-per-file-jit-cached")
        # It needs a filled cache, as it would be after the first run ever.
        c.run_process(
            [
                sys.executable,
                "-c",
                NUMBA_CACHED_RUN,
                "run",
                "-q",
                *WHISPER,
                "--state",
                str(tmp / "prime.db"),
                "--output-dir",
                str(tmp / "prime"),
                str(files[0]),
            ],
            env,
        )
    walls: dict[str, list[float]] = {v: [] for v in variants}
    per_file: dict[str, list[list[float]]] = {v: [] for v in variants}  # wall per file
    stage_sums: dict[str, list[list[float]]] = {v: [] for v in variants}
    loads: list[float] = []
    for r, variant in c.interleave(rounds, variants):
        out = tmp / f"out-{variant}-{r}"
        print(f"round {r + 1}/{rounds}: {variant}", file=sys.stderr, flush=True)
        if variant == "engine-batch":
            run = c.engine_batch(files, whisper_settings(out), out / "s.db")
            walls[variant].append(run.wall)
            loads += run.loads
            per_file[variant].append([run.job_wall[j.id] for j in run.jobs])
            stage_sums[variant].append([sum(t for _k, t in j.stage_times) for j in run.jobs])
        elif variant == "engine-per-file":
            total, one, sums = 0.0, [], []
            for i, f in enumerate(files):
                run = c.engine_batch([f], whisper_settings(out), out / f"s{i}.db")
                total += run.wall
                one.append(run.wall)
                sums.append(sum(t for _k, t in run.jobs[0].stage_times))
            walls[variant].append(total)
            per_file[variant].append(one)
            stage_sums[variant].append(sums)
        else:
            prefix = (
                [subq]
                if variant != "run-per-file-jit-cached"
                else [sys.executable, "-c", NUMBA_CACHED_RUN]
            )
            groups = [files] if variant == "run-batch" else [[f] for f in files]
            total, one, sums = 0.0, [], []
            for i, group in enumerate(groups):
                state = out / f"s{i}.db"
                res = c.run_process(
                    [
                        *prefix,
                        "run",
                        "-q",
                        *WHISPER,
                        "--state",
                        str(state),
                        "--output-dir",
                        str(out),
                        *map(str, group),
                    ],
                    env,
                )
                if res.returncode != 0:
                    raise SystemExit(f"{variant} failed:\n{res.output[-2000:]}")
                total += res.wall
                one.append(res.wall)
                store = Store(state)
                sums += [sum(t for _k, t in j.stage_times) for j in store.jobs()]
                store.close()
            walls[variant].append(total)
            per_file[variant].append(one if len(one) == len(files) else [])
            stage_sums[variant].append(sums)

    med = {v: c.median(walls[v]) for v in variants}
    result: dict[str, Any] = {
        "name": "reuse",
        "machine": c.machine(),
        "rounds": rounds,
        "files": n,
        "audio_seconds": audio,
        "walls": walls,
        "per_file": per_file,
        "stage_sums": stage_sums,
        "model_load_seconds": loads,
        "median": med,
        "command": c.command_line(
            "bench_reuse.py",
            args,
            " ".join(
                x
                for x in (
                    f"--files {n}" if args.files else "",
                    "--jit-cache" if args.jit_cache else "",
                )
                if x
            ),
        ),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    med, n = r["median"], r["files"]
    labels = {
        "engine-batch": f"one Engine, {n} files (in-process, warm)",
        "engine-per-file": f"a new Engine per file (in-process, warm), {n} loads",
        "run-batch": f"`subq run` with all {n} files (one process)",
        "run-per-file": f"`subq run` once per file ({n} processes)",
        "run-per-file-jit-cached": "`subq run` once per file, numba JIT cache on (proposed)",
    }
    labels = {k: v for k, v in labels.items() if k in med}
    base = {
        "engine-batch": "engine-batch",
        "engine-per-file": "engine-batch",
        "run-batch": "run-batch",
        "run-per-file": "run-batch",
        "run-per-file-jit-cached": "run-batch",
    }
    rows = []
    for v, label in labels.items():
        ratio = med[v] / med[base[v]] if med[base[v]] else float("nan")
        rows.append([label, c.fmt_s(med[v]), c.fmt_s(med[v] / n), c.fmt_x(ratio)])
    out = [
        f"Inputs: {n} copies of the committed short clips ({r['audio_seconds']:.0f} s of audio "
        f"in all), tiny.en, default settings with `--backend whisper` (openai-whisper, "
        "greedy, word timestamps)."
        f" {r['rounds']} interleaved round(s); medians.",
        "",
        c.table(["variant", "batch wall", "per file", "vs one batch"], rows),
        "",
        f"Model load inside the engine: median {c.fmt_s(c.median(r['model_load_seconds']))}.",
        "",
        "Per-file time of file k in the one-engine batch (sum of the job's stage_times, and "
        "the job's wall time from RUNNING to DONE, which also holds the model load), vs file 2:",
        "",
    ]
    sums = r["stage_sums"]["engine-batch"]
    walls = r["per_file"]["engine-batch"]
    rows = []
    for k in range(n):
        s = c.median(run[k] for run in sums)
        w = c.median(run[k] for run in walls)
        s2 = c.median(run[1] for run in sums) if n > 1 else s
        w2 = c.median(run[1] for run in walls) if n > 1 else w
        rows.append([k + 1, c.fmt_s(s), c.fmt_x(s / s2), c.fmt_s(w), c.fmt_x(w / w2)])
    out += [c.table(["file k", "stage_times sum", "vs file 2", "job wall", "vs file 2"], rows), ""]
    per = r["per_file"]["run-per-file"]
    if per and all(per):
        rows = [[k + 1, c.fmt_s(c.median(run[k] for run in per))] for k in range(n)]
        out += [
            "`subq run` per file, wall time of each whole process:",
            "",
            c.table(["file k", "process wall"], rows),
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
