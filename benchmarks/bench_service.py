"""The socket's cost (issue 26): an order's round trip and how many events a client keeps
up with, the app attached to the engine service against the engine in the app's process.

Both engines paused (no transcription), on fresh state files, in one run:
1. an order's round trip: cancel, then retry, of one queued job, timed from the call to
   the JobChanged event the caller hears, 200 in all (bench_adds.order_latencies);
2. events per second: 5,000 files added in one order, timed from the call until the
   caller's view holds all 5,000 jobs.

    python benchmarks/bench_service.py [--orders 200] [--files 5000] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adds import make_files, order_latencies
from bench_tui import pct


def flood(engine: Any, folder: Path, count: int) -> float:
    """Jobs per second the caller's view takes in while `count` new files are added."""
    paths = make_files(folder, count)
    have = len(engine.jobs())
    started = time.perf_counter()
    engine.add(paths)
    while len(engine.jobs()) < have + count:
        time.sleep(0.005)
    return count / (time.perf_counter() - started)


def measure(kind: str, tmp: Path, orders: int, files: int) -> dict[str, Any]:
    from subq.engine import Engine, Settings, attach_engine

    settings = Settings(keep_alive=-1)
    state = tmp / f"{kind}.db"
    if kind == "service":
        engine = attach_engine(state, settings, paused=True)
    else:
        engine = Engine(settings, state, whole_queue=True, paused=True)
    engine.start()
    try:
        (tmp / "one.mp3").write_bytes(b"")
        engine.add([str(tmp / "one.mp3")])
        while not engine.jobs():
            time.sleep(0.01)
        trips = order_latencies(engine, engine.jobs()[0].id, lambda: False, most=orders, gap=0)
        assert max(trips) < 10_000, f"{kind}: an order's event never came"
        rate = flood(engine, tmp / f"{kind}-files", files)
    finally:
        if kind == "service":
            engine.stop_engine(timeout=30)
        else:
            engine.shutdown(timeout=30)
            engine.close()
    return {"trips": trips, "rate": rate}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        results = {k: measure(k, tmp, args.orders, args.files) for k in ("in-process", "service")}
    lines = [
        "| engine | order round trip: median ms | p95 ms | worst ms | "
        f"adding {args.files:,} files: jobs seen per second |",
        "|---|---|---|---|---|",
    ]
    for kind, r in results.items():
        trips = r["trips"]
        lines.append(
            f"| {kind} | {statistics.median(trips):.2f} | {pct(trips, 0.95):.2f} | "
            f"{max(trips):.2f} | "
            f"{r['rate']:,.0f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
