"""Run every subq benchmark and write docs/benchmarks.md.

    python benchmarks/run_all.py --quick            # a few minutes on a 2-core CPU
    python benchmarks/run_all.py                    # the full set (much longer)
    python benchmarks/run_all.py --only peers,pause # some of them; other sections are kept

Each benchmark runs as its own process (benchmarks/bench_*.py, which can also be run alone)
and compares its variants side by side, interleaved. The markdown file is updated in place:
only the blocks between `<!-- subq-bench:begin NAME -->` and `<!-- subq-bench:end NAME -->`
are rewritten, so sections other people add (translation, TUI) stay as they are. The
"Defaults chosen" block is derived from the figures present in the file.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

BENCHES = {  # name -> (script, heading)
    "reuse": ("bench_reuse.py", "1. Model reuse"),
    "cleanup": ("bench_cleanup.py", "2. Cleanup policy"),
    "peers": ("bench_peers.py", "4. Whole batch vs peers"),
    "decoding": ("bench_decoding.py", "4b. Decoding options per backend"),
    "batched": ("bench_batched.py", "4c. Batched long-form decoding"),
    "prefetch": ("bench_prefetch.py", "5. Decode/transcribe overlap (prefetch)"),
    "memory": ("bench_memory.py", "6. Memory over a long batch"),
    "pause": ("bench_pause.py", "Pause latency"),
    "bare_loop": ("bench_bare_loop.py", "10. subq vs the loop a user would write"),
}
PLACEHOLDERS = {  # written once, after the block named; their owners fill them in
    "cleanup": "## 3. Translation\n\nSee below.\n",
    "memory": "## 7. TUI responsiveness\n\nSee below.\n",
}
DOC = c.ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- subq-bench:begin {} -->", "<!-- subq-bench:end {} -->"
DATA_TAG = "subq-bench:data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small inputs, one round each")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    p.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    p.add_argument("--raw", type=Path, help="keep each benchmark's JSON result in this folder")
    p.add_argument(
        "--from-raw",
        type=Path,
        metavar="DIR",
        help="run nothing: re-render the results saved in DIR by --raw into the file",
    )
    args = p.parse_args(argv)
    if args.from_raw:
        return render_saved(args)
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    raw = args.raw or Path(tempfile.mkdtemp(prefix="subq-bench-raw-"))
    raw.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        script = str(Path(__file__).with_name(BENCHES[name][0]))
        out = raw / f"{name}.json"
        cmd = [sys.executable, script, "--json", str(out), *(["--quick"] if args.quick else [])]
        print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL)
        if proc.returncode != 0 or not out.exists():
            print(
                f"== {name} FAILED (exit {proc.returncode}); its section is left as it was",
                file=sys.stderr,
            )
            continue
        results[name] = json.loads(out.read_text(encoding="utf-8"))
        print(f"== {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    text = args.doc.read_text(encoding="utf-8") if args.doc.exists() else ""
    text = update_doc(text, results, args.quick)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(text, encoding="utf-8")
    print(f"wrote {args.doc} ({total:.0f} s in all; raw results in {raw})", file=sys.stderr)
    return 0 if len(results) == len(names) else 1


def render_saved(args: argparse.Namespace) -> int:
    """Rebuild sections from saved JSON results (markdown re-rendered by each script)."""
    import importlib

    names = (
        args.only.split(",")
        if args.only
        else [n for n in BENCHES if (args.from_raw / f"{n}.json").exists()]
    )
    results = {}
    for name in names:
        r = json.loads((args.from_raw / f"{name}.json").read_text(encoding="utf-8"))
        r["markdown"] = importlib.import_module(BENCHES[name][0][:-3]).markdown(r)
        results[name] = r
    quick = all("--quick" in r["command"] for r in results.values())
    text = args.doc.read_text(encoding="utf-8") if args.doc.exists() else ""
    args.doc.write_text(update_doc(text, results, quick), encoding="utf-8")
    print(f"wrote {args.doc} from {args.from_raw} ({', '.join(names)})", file=sys.stderr)
    return 0


# -- the markdown file ----------------------------------------------------------------------


def block(name: str, body: str) -> str:
    return f"{BEGIN.format(name)}\n{body.strip()}\n{END.format(name)}\n"


def section(name: str, r: dict[str, Any]) -> str:
    heading = BENCHES[name][1]
    data = json.dumps(compact(r), separators=(",", ":"), default=str)
    return block(
        name,
        "\n".join(
            [
                f"## {heading}",
                "",
                f"Reproduce: `{r['command']}` ({r['elapsed']:.0f} s). Ran: "
                f"{c.machine_line(r['machine'])}.",
                "",
                r["markdown"],
                "",
                f"<!-- {DATA_TAG} {name} {data} -->",
            ]
        ),
    )


def compact(r: dict[str, Any]) -> dict[str, Any]:
    """What the Defaults block needs, kept in the file so a partial rerun can use it."""
    keep = ("summary", "median", "files", "audio_seconds", "rounds", "target_met", "elapsed")
    out = {k: r[k] for k in keep if k in r}
    if r["name"] == "memory":
        out["runs"] = {
            b: {
                k: v.get(k)
                for k in ("slope", "first", "second", "last", "max_rss", "floor_start", "floor_end")
            }
            for b, v in r["runs"].items()
        }
    if r["name"] == "pause":
        out["runs"] = r["runs"]
    # medians of per-round ratios to the figure's baseline: a round shares the machine's load
    for name, key, base in (
        ("batched", "vs_sequential", "sequential"),
        ("peers", "vs_subq", "subq"),
    ):
        if r["name"] == name:
            out[key] = {v: c.median(c.paired(r["runs"], v, base)) for v in r["runs"]}
    return out


def header(m: dict[str, Any], timings: dict[str, Any]) -> str:
    runs = []
    for mode, flag in (("quick", "`run_all.py --quick`"), ("full", "full mode")):
        figures = timings.get(mode, {}).get("figures")
        if isinstance(figures, dict) and figures:
            total = sum(figures.values())
            every = "every figure" if set(figures) >= set(BENCHES) else ", ".join(figures)
            runs.append(f"{flag}: {total / 60:.1f} min ({every}; last run {timings[mode]['date']})")
    return block(
        "header",
        "\n".join(
            [
                "# Benchmarks",
                "",
                "How subq's batch design pays off, measured. Every "
                "figure compares its variants side "
                "by side in one run, interleaved round by round (a busy machine slows all of them "
                "alike), and reports medians and ratios of medians. Each section names the command "
                "that reproduces it, the machine and the date.",
                "",
                "    python benchmarks/run_all.py --quick    # every figure, small inputs",
                "    python benchmarks/run_all.py            # every figure, full size",
                "    python benchmarks/bench_peers.py        # one "
                "figure alone (each script has --quick)",
                "",
                f"Machine of the latest run: {c.machine_line(m)}. Versions: "
                + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
                + ". Time to run: "
                + ("; ".join(runs) + ". " if runs else "not recorded. ")
                + "Timings on a shared 2-core machine are noisy; "
                "ratios measured in one run are the "
                "figures to read, not absolute seconds.",
                "",
                f"<!-- {DATA_TAG} runs {json.dumps(timings, separators=(',', ':'))} -->",
            ]
        ),
    )


def update_doc(text: str, results: dict[str, dict[str, Any]], quick: bool) -> str:
    machine = next(iter(results.values()))["machine"] if results else c.machine()
    timings = read_data(text).get("runs", {})
    mode = timings.setdefault("quick" if quick else "full", {})
    if not isinstance(mode.get("figures"), dict):
        mode["figures"] = {}
    mode["date"] = machine["date"]
    mode["figures"].update({name: round(r["elapsed"]) for name, r in results.items()})
    blocks = {"header": header(machine, timings)}
    blocks |= {name: section(name, r) for name, r in results.items()}
    if BEGIN.format("header") not in text:
        text = skeleton() + ("\n" + text.strip() + "\n" if text.strip() else "")
    for name, body in blocks.items():
        text = replace_block(text, name, body)
    text = replace_block(text, "defaults", defaults(read_data(text)))
    return text


def skeleton() -> str:
    parts = [block("header", "# Benchmarks")]
    for name in BENCHES:
        parts.append(block(name, f"## {BENCHES[name][1]}\n\nNot run yet."))
        if name in PLACEHOLDERS:
            parts.append(PLACEHOLDERS[name])
    parts.append(block("defaults", "## Defaults chosen\n\nNot run yet."))
    return "\n".join(parts)


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(
        re.escape(BEGIN.format(name)) + r".*?" + re.escape(END.format(name)) + r"\n?", re.S
    )
    if pattern.search(text):
        return pattern.sub(lambda _m: body, text, count=1)
    anchor = BEGIN.format("defaults")
    if anchor in text and name != "defaults":
        return text.replace(anchor, body + "\n" + anchor, 1)
    return text.rstrip("\n") + "\n\n" + body


def read_data(text: str) -> dict[str, dict[str, Any]]:
    found = {}
    for m in re.finditer(r"<!-- " + DATA_TAG + r" (\w+) (\{.*?\}) -->", text):
        try:
            found[m.group(1)] = json.loads(m.group(2))
        except ValueError:
            continue
    return found


# -- the defaults the figures support -------------------------------------------------------


def defaults(d: dict[str, dict[str, Any]]) -> str:
    lines = [
        "## Defaults chosen",
        "",
        "Derived from the figures above by benchmarks/run_all.py (rules in `defaults()`); "
        "openai-whisper stays the reference backend, the one the others are checked "
        "against.",
        "",
    ]
    lines += backend_lines(d) + compute_lines(d) + beam_lines(d) + cleanup_lines(d)
    lines += word_lines(d)
    lines += ["", code_defaults()]
    return block("defaults", "\n".join(lines))


def code_defaults() -> str:
    """What the code does today, so a pick that is not wired in yet is visible as such."""
    from subq.engine.asr import faster_whisper as asr_ct2
    from subq.engine.settings import Settings

    s = Settings()
    beam = "greedy" if not s.beam_size or s.beam_size == 1 else f"beam {s.beam_size}"
    return (
        f'The code\'s defaults when this was written: `Settings.backend = "{s.backend}"` '
        "(auto: faster-whisper on the CPU, openai-whisper on CUDA; engine/asr/__init__.py "
        f"resolve_backend), ASR batch size {s.asr_batch_size or 'off'}, faster-whisper "
        f"compute type {asr_ct2.CPU_COMPUTE_TYPE} on the CPU "
        f"and {asr_ct2.CUDA_COMPUTE_TYPE} on CUDA, {beam}, `Settings.cleanup = "
        f'"{s.cleanup}"`, word timestamps {"on" if s.word_timestamps else "off"}. Where a '
        "pick above differs, the pick is what the figures support and the code has not "
        "caught up yet."
    )


def backend_lines(d: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    peers = d.get("peers", {}).get("summary")
    dec = d.get("decoding", {}).get("summary")
    if peers and "subq-whisper" in peers:  # `subq` is auto, which is faster-whisper on the CPU
        fw, wh = peers["subq"], peers["subq-whisper"]
        ratio = 1 / d["peers"].get("vs_subq", {}).get("subq-whisper", wh["wall"] / fw["wall"])
        faster = ratio < 1 and fw["wer"] <= wh["wer"] + 0.02
        pick = "faster-whisper" if faster else "whisper (openai-whisper)"
        why = (
            f"`subq run` with faster-whisper took {ratio:.2f}x the time of `--backend "
            f"whisper` (median of per-round ratios) at WER {fw['wer']:.3f} vs "
            f"{wh['wer']:.3f} (figure 4)"
        )
        if dec and "ct2-int8" in dec:
            why += (
                f"; transcription alone {dec['ct2-int8']['wall'] / dec['whisper']['wall']:.2f}x"
                f" at WER {dec['ct2-int8']['wer']:.3f} vs {dec['whisper']['wer']:.3f} "
                "(figure 4b)"
            )
        out.append(f"- **Backend on the CPU: {pick}.** {why}.")
    else:
        out.append("- Backend on the CPU: no figure 4 yet.")
    out.append(
        "- **Backend on CUDA: whisper (openai-whisper), the reference**: not measured (no "
        "GPU was lent); the per-device default should follow the same rule once "
        "figure 4 runs on a GPU."
    )
    batched = d.get("batched", {})
    s = batched.get("summary")
    if s:
        ratios = batched.get("vs_sequential", {})
        best = min((v for v in s if v.startswith("batched-")), key=lambda v: s[v]["wall"])
        ratio = ratios.get(best, s[best]["wall"] / s["sequential"]["wall"])
        out.append(
            "- **Batched long-form decoding: off by default, `--asr-batch-size N` turns it "
            f"on** (issue 6 asks for an opt-in mode). Its best setting on the CPU, "
            f"`{best}`, took {ratio:.2f}x sequential's time at WER "
            f"{s[best]['wer']:.3f} vs {s['sequential']['wer']:.3f} (figure 4c). What it "
            "gives up is not in that ratio: the previous-text prompt and temperature "
            "fallback between chunks, and pause/cancel wait for a whole batch instead of "
            "one window. On a GPU, where it should pay most, not measured."
        )
    return out


def compute_lines(d: dict[str, dict[str, Any]]) -> list[str]:
    dec = d.get("decoding", {}).get("summary")
    if not dec or "ct2-float32" not in dec:
        return ["- Compute type: no figure 4b yet (int8 on the CPU, float16 on CUDA)."]
    i8, f32 = dec["ct2-int8"], dec["ct2-float32"]
    good = i8["wall"] <= 1.05 * f32["wall"] and i8["wer"] <= f32["wer"] + 0.02
    pick = "int8" if good else "float32"
    return [
        f"- **Compute type (faster-whisper, CPU): {pick}.** int8 took "
        f"{i8['wall'] / f32['wall']:.2f}x float32's time at WER {i8['wer']:.3f} vs "
        f"{f32['wer']:.3f} (figure 4b). On CUDA float16 (not measured here)."
    ]


def beam_lines(d: dict[str, dict[str, Any]]) -> list[str]:
    dec = d.get("decoding", {}).get("summary")
    if not dec:
        return ["- Beam: no figure 4b yet (greedy)."]
    parts, keep_greedy = [], True
    for base, beam, label in (
        ("whisper", "whisper-beam5", "openai-whisper"),
        ("ct2-int8", "ct2-int8-beam5", "faster-whisper"),
    ):
        if base in dec and beam in dec:
            gain = dec[base]["wer"] - dec[beam]["wer"]
            cost = dec[beam]["wall"] / dec[base]["wall"]
            keep_greedy &= not (gain > 0.02 and cost < 1.5)
            parts.append(
                f"{label}: beam 5 took {cost:.2f}x greedy's time, WER "
                f"{dec[beam]['wer']:.3f} vs {dec[base]['wer']:.3f}"
            )
    peers = d.get("peers", {}).get("summary", {})
    if "whisper-cli" in peers and "whisper-cli-beam1" in peers:
        a, b = peers["whisper-cli"], peers["whisper-cli-beam1"]
        parts.append(
            f"whisper CLI: beam 5 / best_of 5 took {a['wall'] / b['wall']:.2f}x beam 1's"
            f" time, WER {a['wer']:.3f} vs {b['wer']:.3f}"
        )
    pick = "greedy (beam 1)" if keep_greedy else "beam 5"
    return [
        f"- **Beam: {pick}.** " + "; ".join(parts) + " (rule: beam 5 only if it cuts WER "
        "by more than 0.02 for less than 1.5x the time)."
    ]


def word_lines(d: dict[str, dict[str, Any]]) -> list[str]:
    dec = d.get("decoding", {}).get("summary")
    if not dec or "whisper-no-words" not in dec:
        return []
    parts = []
    for on, off, label in (
        ("whisper", "whisper-no-words", "openai-whisper"),
        ("ct2-int8", "ct2-int8-no-words", "faster-whisper"),
    ):
        if on in dec and off in dec:
            parts.append(
                f"{label} took {dec[on]['wall'] / dec[off]['wall']:.2f}x the time of "
                f'"off" at WER {dec[on]["wer"]:.3f} vs {dec[off]["wer"]:.3f}'
            )
    return [
        "- Word timestamps (not one of the four; kept on, a choice about cue timing "
        "rather than speed): with them on, " + "; ".join(parts) + " (figure 4b)."
    ]


def cleanup_lines(d: dict[str, dict[str, Any]]) -> list[str]:
    s = d.get("cleanup", {}).get("summary")
    if not s:
        return ["- Cleanup: no figure 2 yet (job)."]
    job, stage, never = s["job"], s["stage"], s["never"]

    def saved(v: dict[str, float]) -> float:
        return (never["rss_between_jobs"] - v["rss_between_jobs"]) / 1e6

    cost = job["clean_seconds"] / job["wall"] if job["wall"] else 0.0
    # `job` earns its place if it gives memory back between files at a small price; `stage`
    # would only be better if it held clearly less (it calls clean more often with translation).
    supported = saved(job) > 0 and cost < 0.05
    stage_better = saved(stage) > saved(job) + 20 and stage["clean_seconds"] < 0.05 * stage["wall"]
    pick = "stage" if stage_better else ("job" if supported else "never")
    verdict = (
        "the figures support the current default"
        if pick == "job"
        else "the figures do not support the current default `job`"
    )
    line = (
        f"- **Cleanup: {pick}** ({verdict}). `job` spent {job['clean_seconds'] * 1000:.0f} "
        f"ms in cleanup ({cost:.1%} of the batch) and held {saved(job):.0f} MB less RSS "
        f"between files than `never`; `stage` {stage['clean_seconds'] * 1000:.0f} ms and "
        f"{saved(stage):.0f} MB less; peak RSS {c.fmt_mb(stage['peak_rss'])} / "
        f"{c.fmt_mb(job['peak_rss'])} / {c.fmt_mb(never['peak_rss'])} (stage / job / never,"
        " figure 2): the peak is set inside transcription, which no policy touches."
    )
    trim = s.get("job-trim-only")
    if trim:
        line += (
            f" Nearly all of the cost is the full gc.collect(): with malloc_trim alone "
            f"`job` spent {trim['clean_seconds'] * 1000:.0f} ms and held {saved(trim):.0f} "
            "MB less than `never` (proposed for engine/memory.clean on the CPU)."
        )
    line += (
        " On CUDA, where the policy also empties torch's cache for other processes, `job` "
        "frees between files without a synchronize per stage (not measured here)."
    )
    return [line]


if __name__ == "__main__":
    sys.exit(main())
