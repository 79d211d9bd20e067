"""Figure 18, start-up against the CPU peer (issue 28): where a one-file run's time goes.

Issue 28 measured about 0.2 s more start-up for subq than for the peer it names (two
faster-whisper processes of one thread each, benchmarks/peer_fw.py). Here one short file
(the bundled demo clip, 6 s of speech) through whole processes, interleaved: `subq run`
(an empty state file each time), the peer with one process and with two. subq's run is
then split by its own event stream (wall-clock times): from the launch to the job's start
(imports, the state file, the engine thread), from there to the model loaded (the worker
process and its imports, then the load itself, which the event times), the transcription,
and from the job's end to the process's exit.

    python benchmarks/bench_startup.py --quick      # 2 rounds
    python benchmarks/bench_startup.py              # 7 rounds
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

VARIANTS = ("subq", "peer-1proc", "peer-2proc")
PHASES = ("to the job's start", "worker and model", "of which the load", "transcribe", "to exit")


def demo_clip() -> Path:
    """The clip `subq demo` transcribes, shipped in the package."""
    import importlib.resources

    return Path(str(importlib.resources.files("subq.engine.data") / "demo.mp3"))


def one_run(variant: str, clip: Path, tmp: Path, n: int, env: dict[str, str]) -> dict:
    folder = tmp / f"{variant}-{n}"
    folder.mkdir()
    media = Path(shutil.copy(clip, folder / clip.name))
    events = folder / "events.jsonl"
    if variant == "subq":
        cmd = [c.bin_path("subq"), "run", "--device", "cpu", "--state", str(folder / "s.db")]
        cmd += ["--events", str(events), str(media)]
    else:
        procs = "1" if variant == "peer-1proc" else "2"
        peer = str(Path(__file__).with_name("peer_fw.py"))
        cmd = [sys.executable, peer, "--procs", procs, "--out", str(folder / "out"), str(media)]
    launched = time.time()
    result = c.run_process(cmd, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{result.output}")
    run: dict[str, Any] = {"wall": result.wall}
    if variant == "subq":
        run["phases"] = phases(events, launched, result.wall)
    return run


def phases(events: Path, launched: float, wall: float) -> dict[str, float]:
    """subq's run split at its events: running, model_loaded (with its own load time), done."""
    at: dict[str, float] = {}
    load = 0.0
    for line in events.read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "job_state" and e["state"] in ("running", "done"):
            at.setdefault(e["state"], e["at"])
        elif e["type"] == "model_loaded":
            at.setdefault("loaded", e["at"])
            load = e.get("seconds", 0.0)
    return {
        PHASES[0]: at["running"] - launched,
        PHASES[1]: at["loaded"] - at["running"],
        PHASES[2]: load,
        PHASES[3]: at["done"] - at["loaded"],
        PHASES[4]: launched + wall - at["done"],
    }


def main() -> int:
    args = c.base_parser(__doc__).parse_args()
    rounds = c.rounds(args, quick=2, full=7)
    with tempfile.TemporaryDirectory(prefix="subq-bench-startup-") as name:
        tmp = Path(name)
        env = c.isolate(tmp)
        clip = demo_clip()
        runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
        for n, variant in c.interleave(rounds, VARIANTS):
            runs[variant].append(one_run(variant, clip, tmp, n, env))
    return c.finish(args, summarize(runs, rounds, args))


def summarize(runs: dict[str, list[dict]], rounds: int, args: Any) -> dict:
    walls = {v: c.median(r["wall"] for r in runs[v]) for v in VARIANTS}
    ratios = [s["wall"] / p["wall"] for s, p in zip(runs["subq"], runs["peer-2proc"], strict=True)]
    rows = [[v, c.fmt_s(walls[v]), f"{walls[v] / walls['peer-2proc']:.2f}x"] for v in VARIANTS]
    split = [[p, c.fmt_s(c.median(r["phases"][p] for r in runs["subq"]))] for p in PHASES]
    data = {"runs": runs, "walls": walls, "ratio_subq_peer2": c.median(ratios), "rounds": rounds}
    md = [
        "## 18. Start-up against the CPU peer (issue 28)",
        "",
        c.machine_line(c.machine()),
        f"`{c.command_line('bench_startup.py', args)}`, {rounds} interleaved round(s); one "
        "short file (the bundled demo clip), whole processes, medians.",
        "",
        c.table(["run", "wall", "vs the 2-process peer"], rows),
        "",
        f"subq / peer (2 processes), same round, median: {data['ratio_subq_peer2']:.2f}x.",
        "",
        "subq's run, split at its own events:",
        "",
        c.table(["phase", "median"], split),
    ]
    return {"markdown": "\n".join(md), "data": data}


if __name__ == "__main__":
    sys.exit(main())
