"""Figure 17, a Ray cluster's worker against a local one (issue 29), on this one machine.

The same files through `subq run` twice per round, interleaved: `--device cpu` (one local
worker, every core) and `--cluster ADDRESS` on a Ray cluster made here with Ray's own
test-cluster helper (a head with no CPUs and one node with every core: one CPU worker that
reserves them, so both runs decode with the same threads). Per file, the time between its
start and its end (the run's `--events`); the overhead per file is the cluster's minus the
local one's, in the same round. The start-up is the rest of each run's wall time (connect,
actor and worker start, model load), and the cluster's own start (`ray start --head` and a
node, done once per session on a real cluster) is measured apart.

    python benchmarks/bench_cluster.py --quick      # 1 round
    python benchmarks/bench_cluster.py              # 3 rounds
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

FILES = ("talk.mp4", "podcast.mp3", "long.mp3", "story.mp3")


def file_seconds(events: Path) -> dict[str, float]:
    """Each file's seconds from running to done, from the run's event stream."""
    started: dict[str, float] = {}
    took: dict[str, float] = {}
    for line in events.read_text().splitlines():
        e = json.loads(line)
        if e.get("type") != "job_state":
            continue
        name = Path(e["path"]).name
        if e["state"] == "running" and name not in started:
            started[name] = e["at"]
        elif e["state"] == "done" and name in started:
            took[name] = e["at"] - started[name]
    return took


def one_run(variant: str, address: str, tmp: Path, n: int, env: dict[str, str]) -> dict:
    folder = tmp / f"{variant}-{n}"
    folder.mkdir()
    for name in FILES:
        shutil.copy(c.DATA / name, folder / name)
    events = folder / "events.jsonl"
    where = ["--cluster", address] if variant == "cluster" else ["--device", "cpu"]
    cmd = [c.bin_path("subq"), "run", "--state", str(folder / "s.db"), "--events", str(events)]
    result = c.run_process([*cmd, *where, *(str(folder / f) for f in FILES)], env=env)
    if result.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{result.output}")
    took = file_seconds(events)
    return {"wall": result.wall, "files": took, "startup": result.wall - sum(took.values())}


def main() -> int:
    args = c.base_parser(__doc__).parse_args()
    rounds = c.rounds(args, quick=1, full=3)
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory(prefix="subq-bench-cluster-") as name:
        tmp = Path(name)
        env = c.isolate(tmp)
        started = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        cluster.add_node(num_cpus=os.cpu_count() or 1)
        cluster.wait_for_nodes()
        cluster_start = time.perf_counter() - started
        try:
            runs: dict[str, list[dict]] = {"local": [], "cluster": []}
            for n, variant in c.interleave(rounds, ("local", "cluster")):
                runs[variant].append(one_run(variant, cluster.address, tmp, n, env))
        finally:
            cluster.shutdown()
    result = summarize(runs, cluster_start, rounds, args)
    return c.finish(args, result)


def summarize(runs: dict[str, list[dict]], cluster_start: float, rounds: int, args) -> dict:
    per_file = [
        cl["files"][f] - lo["files"][f]
        for lo, cl in zip(runs["local"], runs["cluster"], strict=True)
        for f in FILES
    ]
    rows = []
    for variant in ("local", "cluster"):
        r = runs[variant]
        rows.append(
            [
                variant,
                c.fmt_s(c.median(x["wall"] for x in r)),
                c.fmt_s(c.median(x["startup"] for x in r)),
                *(c.fmt_s(c.median(x["files"][f] for x in r)) for f in FILES),
            ]
        )
    header = ["run", "wall", "start-up", *FILES]
    data: dict[str, Any] = {
        "runs": runs,
        "cluster_start_s": cluster_start,
        "overhead_per_file_s": c.median(per_file),
        "overhead_range_s": [min(per_file), max(per_file)],
    }
    md = [
        "## 17. A Ray cluster's worker against a local one (issue 29)",
        "",
        c.machine_line(c.machine()),
        f"`{c.command_line('bench_cluster.py', args)}`, {rounds} interleaved round(s).",
        "",
        c.table(header, rows),
        "",
        f"Overhead per file (cluster − local, same round, median of {len(per_file)}): "
        f"{data['overhead_per_file_s']:+.2f} s (range {min(per_file):+.2f} to "
        f"{max(per_file):+.2f} s). Cluster start (head and one node, once per session): "
        f"{cluster_start:.1f} s.",
    ]
    return {"markdown": "\n".join(md), "data": data}


if __name__ == "__main__":
    sys.exit(main())
