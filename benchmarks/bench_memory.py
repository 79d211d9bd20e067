"""Figure 6, memory over a long batch: RSS after every file of one engine, on the CPU.

Each backend runs in a fresh process (benchmarks/child.py batch) over N copies of the
committed short clips; RSS is read when each job turns DONE (after the default `job`
cleanup). Reported: after file 1 (model loaded, first inference done), after file 2, the
last file, the peak, and the least-squares slope over files 2..N.

    python benchmarks/bench_memory.py --quick       # 20 files, default backend
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


def slope(values: list[float]) -> float:
    """Least-squares bytes per file."""
    n = len(values)
    if n < 2:
        return 0.0
    xs = range(n)
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)


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
    files = c.copies(tmp / "inputs", n)
    child = str(Path(__file__).with_name("child.py"))
    runs: dict[str, dict[str, Any]] = {}
    for backend in backends:
        print(f"{backend}: {n} files", file=sys.stderr, flush=True)
        out = tmp / backend
        out.mkdir()
        settings = json.dumps({"backend": backend, "output_dir": str(out)})
        res = c.run_process([sys.executable, child, "batch", "--settings", settings,
                             "--state", str(out / "s.db"), "--json", str(out / "r.json"),
                             "--interval", "0.5", *map(str, files)], env)
        if res.returncode != 0:
            raise SystemExit(f"{backend} failed:\n{res.output[-2000:]}")
        data = json.loads((out / "r.json").read_text())
        rss = data["rss_done"]
        runs[backend] = {
            "rss_done": rss, "wall": data["wall"], "max_rss": res.max_rss,
            "slope": slope(rss[1:]), "first": rss[0], "second": rss[1], "last": rss[-1],
            # RSS saw-tooths by tens of MB from file to file; the floor shows a leak better
            "floor_start": min(rss[1:6]), "floor_end": min(rss[-5:]),
        }
    result: dict[str, Any] = {
        "name": "memory", "machine": c.machine(), "files": n, "runs": runs,
        "command": c.command_line(
            "bench_memory.py", args,
            " ".join(x for x in (f"--files {n}" if args.files else "",
                                 f"--backends {args.backends}" if args.backends else "") if x)),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    rows = []
    for backend, v in r["runs"].items():
        growth = v["last"] - v["second"]
        floor = v["floor_end"] - v["floor_start"]
        rows.append([backend, r["files"], c.fmt_mb(v["first"]), c.fmt_mb(v["second"]),
                     c.fmt_mb(v["last"]), f"{growth / 1e6:+.1f} MB",
                     f"{v['slope'] / 1e3:+.0f} KB/file", f"{floor / 1e6:+.1f} MB",
                     c.fmt_mb(v["max_rss"])])
    lines = [
        f"One engine, {r['files']} files (copies of the committed short clips), tiny.en on the "
        "CPU, default settings (cleanup `job`); RSS read as each job turns DONE. RSS moves "
        "up and down by tens of MB between files (allocator reuse), so besides the slope the "
        "table gives the floor: the lowest reading of the last 5 files minus that of files "
        "2-6.",
        "",
        c.table(["backend", "files", "RSS after file 1", "after file 2", "after last",
                 "last - file 2", "slope (files 2..N)", "floor: last 5 - files 2..6",
                 "peak RSS"], rows),
        "",
        "RSS after each file (MB):",
        "",
    ]
    for backend, v in r["runs"].items():
        lines.append(f"- {backend}: " + " ".join(f"{x / 1e6:.0f}" for x in v["rss_done"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
