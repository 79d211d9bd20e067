"""The GPU check: every part in its own process on its own time budget, then one report.

    python benchmarks/gpu/check.py OUT_DIR            # on the GPU machine (check.sh runs it)
    python benchmarks/gpu/check.py --smoke OUT_DIR    # on the CPU, tiny dimensions, < 5 min

Why processes: a part that stalls (numba and triton compile on first call, a hung kernel)
is killed at its budget and the others still run, and each part starts from an empty CUDA
context, so its memory figures are its own. Each part writes OUT_DIR/part-NAME.json as it
goes; this script joins them into OUT_DIR/gpu.json and the table OUT_DIR/gpu.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# seconds per part on the GPU machine (check.sh gives pytest -m gpu its own 90 s first);
# together under the 9 minutes the machine's check may take.
BUDGETS = {"asr": 300, "translate": 60, "oom": 30}
SMOKE_BUDGETS = {"asr": 150, "translate": 60, "oom": 30}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for gpu.md, gpu.json and the part files")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny dimensions, short audio")
    p.add_argument("--part", choices=sorted(BUDGETS), help=argparse.SUPPRESS)
    p.add_argument("--pytest-rc", type=int, help="exit status of pytest -m gpu (check.sh)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part:
        return run_part(args.part, args.out, args.smoke)
    started = time.perf_counter()
    budgets = SMOKE_BUDGETS if args.smoke else BUDGETS
    status: dict[str, str] = {}
    for name, budget in budgets.items():
        cmd = [sys.executable, str(Path(__file__).resolve()), str(args.out), "--part", name]
        cmd += ["--smoke"] if args.smoke else []
        print(f"== {name} (budget {budget} s)", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, timeout=budget).returncode
            status[name] = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            status[name] = f"stopped at its {budget} s budget"
        print(f"== {name}: {status[name]} in {time.perf_counter() - t0:.0f} s", flush=True)
    report = collect(args.out, status, args.smoke, args.pytest_rc)
    report["elapsed_s"] = time.perf_counter() - started
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "gpu.md").write_text(markdown(report))
    print((args.out / "gpu.md").read_text())
    return 0 if all(s == "ok" for s in status.values()) else 1


def run_part(name: str, out: Path, smoke: bool) -> int:
    sys.path.insert(0, str(HERE))
    import parts

    rec = parts.Recorder(out / f"part-{name}.json")
    parts.PARTS[name](rec, smoke)
    return 0


def collect(out: Path, status: dict[str, str], smoke: bool, pytest_rc: int | None) -> dict:
    data: dict[str, Any] = {}
    for name in status:
        path = out / f"part-{name}.json"
        data[name] = json.loads(path.read_text()) if path.exists() else {}
    device = "CPU (smoke)" if smoke else "unknown"
    for part in data.values():
        for value in part.values():
            if isinstance(value, dict) and value.get("device_name"):
                device = value["device_name"]
    try:
        import torch

        versions = f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    except ImportError:
        versions = "no torch"
    return {
        "date": datetime.date.today().isoformat(),
        "device": device,
        "host": platform.node(),
        "python": platform.python_version(),
        "versions": versions,
        "smoke": smoke,
        "status": status,
        "pytest_gpu_rc": pytest_rc,
        "parts": data,
    }


def _mib(x: Any) -> str:
    return f"{x / 2**20:,.0f} MiB" if isinstance(x, int | float) else "n/a"


def _mem(point: dict[str, Any] | None) -> list[str]:
    point = point or {}
    return [_mib(point.get(k)) for k in ("torch_reserved", "nvml_this_process",
                                         "nvml_device_used")]  # fmt: skip


def markdown(r: dict[str, Any]) -> str:
    asr, mt, oom = (r["parts"].get(k, {}) for k in ("asr", "translate", "oom"))
    setup = asr.get("asr_setup", {})
    lines = [
        f"GPU check: {r['device']}; {r['date']}; Python {r['python']}, {r['versions']}; "
        f"{'SMOKE RUN (CPU, tiny dimensions)' if r['smoke'] else 'full run'}; "
        f"{r.get('elapsed_s', 0):.0f} s.",
        "",
        f"Parts: {', '.join(f'{k} {v}' for k, v in r['status'].items())}; "
        f"pytest -m gpu exit status: {r['pytest_gpu_rc']}.",
        "",
        f"ASR: random weights at {setup.get('dims', '?')} dimensions, fp16 {setup.get('fp16')}, "
        f"{setup.get('audio_seconds', 0):.0f} s of looped test speech, "
        f"{setup.get('tokens_per_window')} tokens per window (end-of-text suppressed), "
        "temperature 0, no thresholds.",
        "",
        "| stage | seconds | realtime | model calls | peak reserved | reserved after cleanup "
        "| NVML this process | NVML device |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, v in asr.items():
        if key.startswith("asr:"):
            lines.append(
                f"| {key[4:]} | {v['seconds']:.2f} | {v['realtime']:.1f}x | {v['calls']} | "
                f"{_mib(v.get('peak_reserved'))} | " + " | ".join(_mem(v["after_cleanup"])) + " |"
            )
    seq = asr.get("asr:sequential", {}).get("seconds")
    best = [(k, v["seconds"]) for k, v in asr.items() if k.startswith("asr:batched-")
            and "words" not in k]  # fmt: skip
    if seq and best:
        k, s = min(best, key=lambda kv: kv[1])
        lines += ["", f"Best batched ({k[4:]}): {seq / s:.1f}x sequential's throughput."]
    lines += [
        "",
        "| memory point | torch reserved | NVML this process | NVML device |",
        "|---|---|---|---|",
    ]
    for key in ("mem_before_load", "mem_after_load", "mem_after_unload"):
        lines.append(
            f"| ASR {key[4:].replace('_', ' ')} | " + " | ".join(_mem(asr.get(key))) + " |"
        )
    lines.append(
        "| translation after unload | " + " | ".join(_mem(mt.get("mt_mem_after_unload"))) + " |"
    )
    load = asr.get("load", {})
    lines += ["", f"ASR model footprint as loaded: {_mib(load.get('footprint'))} "
              f"(built in {load.get('seconds', 0):.1f} s); translation model: "
              f"{_mib(mt.get('mt_footprint'))}."]  # fmt: skip
    b32, b1 = mt.get("mt:batch-32", {}), mt.get("mt:batch-1", {})
    if b32 and b1:
        fast, slow = b32["sentences_per_s"], b1["sentences_per_s"]
        lines += [
            "",
            f"Translation (random MarianMT at {'tiny' if r['smoke'] else 'opus-mt'} dimensions): "
            "batch 32 "
            f"{fast:.1f} sentences/s vs batch 1 {slow:.1f} ({fast / slow:.1f}x).",
        ]
    o = oom.get("oom", {})
    shown = {k: o[k] for k in ("provoked", "recovered", "skipped") if k in o}
    lines += ["", f"OOM provoked and recovered: {json.dumps(shown)}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
