"""Figure 2, cleanup policy: `stage` vs `job` vs `never` (Settings.cleanup).

Each variant is a fresh process (benchmarks/child.py batch) running one engine over the
same files, so peak RSS is its own. Besides wall time and RSS, the child times every
memory.clean call: that is exactly what the policy costs, free of the machine's noise.

    python benchmarks/bench_cleanup.py --quick      # 3 short clips, 1 round
    python benchmarks/bench_cleanup.py              # 8 short clips + long.mp3, 3 rounds
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

POLICIES = ("stage", "job", "never", "job-trim-only")
LABELS = {
    "stage": "`stage`",
    "job": "`job` (default)",
    "never": "`never`",
    "job-trim-only": "`job`, CPU cleanup = malloc_trim only (proposed)",
}


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    args = p.parse_args(argv)
    rounds = c.rounds(args)
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-cleanup-"))
    env = c.isolate(tmp)
    started = time.perf_counter()
    c.bundled_checkpoint()
    files = c.copies(tmp / "inputs", 3 if args.quick else 8)
    if not args.quick:
        files.append(Path(shutil.copy(c.DATA / "long.mp3", tmp / "inputs" / "long.mp3")))
    child = str(Path(__file__).with_name("child.py"))
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in POLICIES}
    for r, policy in c.interleave(rounds, POLICIES):
        print(f"round {r + 1}/{rounds}: cleanup={policy}", file=sys.stderr, flush=True)
        out = tmp / f"{policy}-{r}"
        out.mkdir()
        settings = json.dumps(
            {"cleanup": policy.split("-")[0], "output_dir": str(out), "backend": "whisper"}
        )
        clean = "trim-only" if policy.endswith("trim-only") else "as-is"
        res = c.run_process(
            [
                sys.executable,
                child,
                "batch",
                "--settings",
                settings,
                "--clean",
                clean,
                "--state",
                str(out / "s.db"),
                "--json",
                str(out / "r.json"),
                *map(str, files),
            ],
            env,
        )
        if res.returncode != 0:
            raise SystemExit(f"cleanup={policy} failed:\n{res.output[-2000:]}")
        data = json.loads((out / "r.json").read_text())
        data["process_max_rss"] = res.max_rss
        data["process_wall"] = res.wall
        runs[policy].append(data)
    summary = {}
    for policy in POLICIES:
        rs = runs[policy]
        summary[policy] = {
            "wall": c.median(d["wall"] for d in rs),
            "clean_seconds": c.median(d["clean_seconds"] for d in rs),
            "clean_calls": c.median(d["clean_calls"] for d in rs),
            "peak_rss": c.median(d["process_max_rss"] for d in rs),
            "mean_rss": c.median(sum(d["rss_samples"]) / len(d["rss_samples"]) for d in rs),
            "rss_between_jobs": c.median(sum(d["rss_done"]) / len(d["rss_done"]) for d in rs),
        }
    result: dict[str, Any] = {
        "name": "cleanup",
        "machine": c.machine(),
        "rounds": rounds,
        "files": len(files),
        "audio_seconds": c.audio_seconds(files),
        "runs": runs,
        "summary": summary,
        "command": c.command_line("bench_cleanup.py", args),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    s = r["summary"]
    job = s["job"]
    rows = []
    for policy in POLICIES:
        v = s[policy]
        rows.append(
            [
                LABELS[policy],
                c.fmt_s(v["wall"]),
                c.fmt_x(v["wall"] / job["wall"]),
                f"{v['clean_seconds'] * 1000:.0f} ms / {v['clean_calls']:.0f} calls",
                c.fmt_mb(v["peak_rss"]),
                c.fmt_mb(v["mean_rss"]),
                c.fmt_mb(v["rss_between_jobs"]),
            ]
        )
    return "\n".join(
        [
            f"Inputs: {r['files']} files ({r['audio_seconds']:.0f} "
            "s of audio), tiny.en on the CPU, "
            "openai-whisper backend; each variant a fresh process; "
            f"{r['rounds']} interleaved round(s); "
            "medians.",
            "",
            c.table(
                [
                    "policy",
                    "batch wall",
                    "vs job",
                    "time in cleanup",
                    "peak RSS",
                    "mean RSS",
                    "RSS after each job",
                ],
                rows,
            ),
            "",
            "Peak RSS is the kernel's ru_maxrss of the whole process; mean RSS averages the "
            "engine's own memory samples (every 0.1 s); RSS after each job is read when the job "
            'turns DONE. "time in cleanup" is every memory.clean call timed inside the engine: '
            "the policy's exact cost, unlike the batch wall time, which the shared machine's load "
            "swamps. On the CPU a cleanup is gc.collect() + malloc_trim(0); on CUDA it also "
            "synchronizes and empties torch's cache (not measurable on this machine). The last "
            "row keeps `job` but skips the full gc.collect() on the CPU (benchmarks/child.py "
            "--clean trim-only).",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
