"""Adding never stalls (issue 23): orders and keys during a big add.

Three phases in one run, each on a fresh state file, the engine paused (adding is what is
measured, not transcribing):

1. the engine alone: 10,000 new files added in one order while a probe sends an order
   every 20 ms (cancel, then retry, of a job already queued) and times it to its event;
2. the same while 2,000 files already queued are given again with a new --output-dir;
3. the real app (Textual `run_test`, 120x40) while 10,000 files are added: the key probe
   of bench_tui.py (a key press every 0.5 s, timed to the frame that shows it) and its
   event-loop lag probe.

    python benchmarks/bench_adds.py [--files 10000] [--readd 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tui import Probes, pct

TARGET_MS = 100.0


def make_files(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = folder / f"episode {i:05d}.mp3"
        path.write_bytes(b"")
        paths.append(str(path))
    return paths


def order_latencies(
    engine: Any, job_id: int, until: Any, *, most: int | None = None, gap: float = 0.02
) -> list[float]:
    """Cancel / retry `job_id` every `gap` s until `until()` (or `most` orders), each timed
    to its JobChanged; an order whose event never came counts 10 s."""
    from subq.engine.events import JobChanged

    seen = threading.Event()

    def on(event: Any) -> None:
        if isinstance(event, JobChanged) and event.job.id == job_id:
            seen.set()

    engine.subscribe(on)
    out: list[float] = []
    try:
        while not until() and (most is None or len(out) < most):
            seen.clear()
            job = next(j for j in engine.jobs() if j.id == job_id)
            sent = time.perf_counter()
            (engine.retry if job.state.finished else engine.cancel)(job_id)
            seen.wait(10)
            out.append((time.perf_counter() - sent) * 1000)
            time.sleep(gap)
    finally:
        engine.unsubscribe(on)
    return out


def engine_phase(tmp: Path, count: int, readd: int) -> dict[str, Any]:
    from subq.engine import Engine, Settings

    results: dict[str, Any] = {}
    engine = Engine(Settings(keep_alive=-1), tmp / "a.sqlite3", whole_queue=True, paused=True)
    engine.start()
    try:
        engine.add([str(tmp / "probe.mp3")])
        while not engine.jobs():
            time.sleep(0.01)
        probe = engine.jobs()[0].id
        paths = make_files(tmp / "many", count)
        started = time.perf_counter()
        engine.add(paths)
        results["add"] = order_latencies(engine, probe, lambda: len(engine.jobs()) > count)
        results["add_s"] = time.perf_counter() - started
        again = paths[:readd]
        subs = str(tmp / "subs")
        started = time.perf_counter()
        engine.add(again, Settings(keep_alive=-1, output_dir=subs))
        moved = lambda: sum(1 for j in engine.jobs() if (j.output_base or "").startswith(subs))  # noqa: E731
        results["readd"] = order_latencies(engine, probe, lambda: moved() >= readd)
        results["readd_s"] = time.perf_counter() - started
    finally:
        engine.shutdown(timeout=30)
        engine.store.close()
    return results


async def app_phase(tmp: Path, count: int) -> dict[str, Any]:
    from subq.engine import Engine, Settings
    from subq.tui.app import SubqApp

    engine = Engine(Settings(keep_alive=-1), tmp / "b.sqlite3", whole_queue=True, paused=True)
    engine.start()
    first = make_files(tmp / "first", 3)
    app = SubqApp(engine, start_paths=[Path(p) for p in first])
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            while app.main.table.row_count < 3:
                await pilot.pause(0.05)
            app.main.table.focus()
            await pilot.pause(0.5)
            probes = Probes(app, pilot)
            paths = make_files(tmp / "app-many", count)
            started = time.perf_counter()
            engine.add(paths)
            # the table's own count: engine.jobs() copies 10,000 jobs under the queue's lock
            # (~40 ms), which would put the probe's own stall into what it measures
            busy = lambda: app.main.table.row_count < count + 3  # noqa: E731
            result = await probes.phase(600, busy)
            result["add_s"] = time.perf_counter() - started
            while app.main.table.row_count < count + 3 and time.perf_counter() - started < 120:
                await pilot.pause(0.1)
            result["rows"] = app.main.table.row_count
            return result
    finally:
        engine.shutdown(timeout=30)
        engine.store.close()


def line(name: str, values: list[float]) -> str:
    worst = max(values) if values else float("nan")
    return (
        f"| {name} | {len(values)} | {statistics.median(values):.1f} | {pct(values, 0.95):.1f} "
        f"| {worst:.1f} | {'yes' if worst <= TARGET_MS else 'no'} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--readd", type=int, default=2_000)
    parser.add_argument("--out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        eng = engine_phase(tmp, args.files, args.readd)
        app = asyncio.run(app_phase(tmp, args.files))
    text = "\n".join(
        [
            f"Adding {args.files:,} files took {eng['add_s']:.1f} s and re-adding "
            f"{args.readd:,} with a new output folder {eng['readd_s']:.1f} s (engine alone); "
            f"in the app the {args.files:,} were queued in {app['add_s']:.1f} s, "
            f"{app['rows']:,} rows shown.",
            "",
            "| during | samples | median ms | p95 ms | worst ms | within 100 ms |",
            "|---|---|---|---|---|---|",
            line(f"adding {args.files:,}: an order to its event", eng["add"]),
            line(f"re-adding {args.readd:,}: an order to its event", eng["readd"]),
            line(f"adding {args.files:,} in the app: a key to its frame", app["keys"]),
            line(f"adding {args.files:,} in the app: event-loop lag", app["lag"]),
        ]
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
