"""Figure 6, memory and speed over a long batch: RSS and time of every file of one engine.

Each backend runs in a fresh process (benchmarks/child.py batch) over N copies of one
committed clip; RSS is read when each job turns DONE (after the default `job` cleanup).
Reported: after file 1 (model loaded, first inference done), after file 2, the last file,
the peak, the least-squares slope over files 2..N, and each file's time against file 2's.

    python benchmarks/bench_memory.py --quick       # 20 files, openai-whisper
    python benchmarks/bench_memory.py               # 60 files, both backends
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

CLIP = "talk.mp4"


def slope(values: list[float]) -> float:
    """Least-squares bytes per file."""
    n = len(values)
    if n < 2:
        return 0.0
    xs = range(n)
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    p.add_argument("--files", type=int, help="batch length (default: quick 20, full 60)")
    p.add_argument("--backends", help="comma-separated (default: quick whisper, full both)")
    args = p.parse_args(argv)
    n = args.files or (20 if args.quick else 60)
    backends = (args.backends or ("whisper" if args.quick else "whisper,faster-whisper")).split(",")
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-memory-"))
    env = c.isolate(tmp)
    started = time.perf_counter()
    c.bundled_checkpoint()
    files = c.copies(tmp / "inputs", n, (CLIP,))  # one clip: every file is the same work
    child = str(Path(__file__).with_name("child.py"))
    runs: dict[str, dict[str, Any]] = {}
    for backend in backends:
        print(f"{backend}: {n} files", file=sys.stderr, flush=True)
        out = tmp / backend
        out.mkdir()
        settings = json.dumps({"backend": backend, "output_dir": str(out)})
        res = c.run_process(
            [
                sys.executable,
                child,
                "batch",
                "--settings",
                settings,
                "--state",
                str(out / "s.db"),
                "--json",
                str(out / "r.json"),
                "--interval",
                "0.5",
                *map(str, files),
            ],
            env,
        )
        if res.returncode != 0:
            raise SystemExit(f"{backend} failed:\n{res.output[-2000:]}")
        data = json.loads((out / "r.json").read_text())
        rss = data["rss_done"]
        per_file = [sum(t.values()) for t in data["stage_times"]]  # probe..write, no queue
        runs[backend] = {
            "per_file": per_file,
            "rss_done": rss,
            "wall": data["wall"],
            "max_rss": res.max_rss,
            "slope": slope(rss[1:]),
            "first": rss[0],
            "second": rss[1],
            "last": rss[-1],
            # RSS saw-tooths by tens of MB from file to file; the floor shows a leak better
            "floor_start": min(rss[1:6]),
            "floor_end": min(rss[-5:]),
        }
    result: dict[str, Any] = {
        "name": "memory",
        "machine": c.machine(),
        "files": n,
        "runs": runs,
        "command": c.command_line(
            "bench_memory.py",
            args,
            " ".join(
                x
                for x in (
                    f"--files {n}" if args.files else "",
                    f"--backends {args.backends}" if args.backends else "",
                )
                if x
            ),
        ),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    rows = []
    for backend, v in r["runs"].items():
        growth = v["last"] - v["second"]
        floor = v["floor_end"] - v["floor_start"]
        rows.append(
            [
                backend,
                r["files"],
                c.fmt_mb(v["first"]),
                c.fmt_mb(v["second"]),
                c.fmt_mb(v["last"]),
                f"{growth / 1e6:+.1f} MB",
                f"{v['slope'] / 1e3:+.0f} KB/file",
                f"{floor / 1e6:+.1f} MB",
                c.fmt_mb(v["max_rss"]),
            ]
        )
    lines = [
        f"One engine, {r['files']} files (copies of one committed clip), tiny.en on the "
        "CPU, default settings (cleanup `job`); RSS read as each job turns DONE. RSS moves "
        "up and down by tens of MB between files (allocator reuse), so besides the slope the "
        "table gives the floor: the lowest reading of the last 5 files minus that of files "
        "2-6.",
        "",
        c.table(
            [
                "backend",
                "files",
                "RSS after file 1",
                "after file 2",
                "after last",
                "last - file 2",
                "slope (files 2..N)",
                "floor: last 5 - files 2..6",
                "peak RSS",
            ],
            rows,
        ),
        "",
        "RSS after each file (MB):",
        "",
    ]
    for backend, v in r["runs"].items():
        lines.append(f"- {backend}: " + " ".join(f"{x / 1e6:.0f}" for x in v["rss_done"]))
    lines += ["", *decay_lines(r)]
    return "\n".join(lines)


def decay_lines(r: dict[str, Any]) -> list[str]:
    """Does file k take longer than file 2? Same clip every time, so only drift shows."""
    rows = []
    for backend, v in r["runs"].items():
        t = v.get("per_file")
        if not t or len(t) < 12:
            continue
        second = t[1]
        early, late = c.median(t[1:11]), c.median(t[-10:])
        ratios = [x / second for x in t[2:]]
        rows.append(
            [
                backend,
                c.fmt_s(t[0]),
                c.fmt_s(second),
                c.fmt_s(early),
                c.fmt_s(late),
                c.fmt_x(late / early),
                f"{min(ratios):.2f}-{max(ratios):.2f}x",
                f"{sum(abs(x - 1) <= 0.05 for x in ratios)}/{len(ratios)}",
            ]
        )
    if not rows:
        return []
    return [
        "Speed over the same batch (time per file = the job's stage times, probe to write; "
        f"every file is a copy of {CLIP}, so the work is identical). The target is file k "
        "within 5% of file 2: single files on a shared 2-core machine move more than that "
        "from noise alone, so the drift to read is the median of the last 10 files over "
        "the median of files 2-11.",
        "",
        c.table(
            [
                "backend",
                "file 1 (load)",
                "file 2",
                "median files 2-11",
                "median last 10",
                "last 10 / files 2-11",
                "file k / file 2 (range)",
                "files within 5% of file 2",
            ],
            rows,
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
