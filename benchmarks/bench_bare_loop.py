"""Figure 10, subq against the loop a user would write: whole processes, side by side.

The bar for a batch tool is the script it replaces. Here that is a faster-whisper loop: one
`WhisperModel` (int8, on the CPU), `beam_size=1` like subq's greedy default, no word
timestamps, an SRT per file (benchmarks/child.py fwloop). subq runs with its defaults (word
timestamps included) from an empty state file each time, so a stored transcript is never
measured as speed; extra variants pass their own flags (`--variant "cpu2=--device cpu,cpu"`).

Inputs: 6 files, the 3 committed short clips and 3 copies of one ~50 s mix (make_mixes).
Rounds are interleaved (ABBA) and the figure is the median over rounds of subq's wall time
over the loop's in the same round: the machine's load moves, a round shares it.

    python benchmarks/bench_bare_loop.py --quick        # 1 round
    python benchmarks/bench_bare_loop.py                # 5 rounds
    python benchmarks/bench_bare_loop.py --variant "cpu2=--device cpu,cpu"
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

LOOP = "loop"
SUBQ = "subq"


def inputs(folder: Path) -> list[Path]:
    """The 3 short clips and 3 copies of one ~50 s mix (its reference text beside each)."""
    files = c.copies(folder, 3)
    (mix,) = c.make_mixes(folder / "mix", 1)
    for i in range(3):
        copy = folder / f"long{i + 1}.wav"
        shutil.copy(mix, copy)
        shutil.copy(mix.with_suffix(".ref.txt"), copy.with_suffix(".ref.txt"))
        files.append(copy)
    return files


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help='another subq run, "NAME=FLAGS" (e.g. "cpu2=--device cpu,cpu")',
    )
    args = p.parse_args(argv)
    rounds = c.rounds(args, quick=1, full=5)
    extra = dict(v.split("=", 1) for v in args.variant)
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-loop-"))
    env = c.isolate(tmp)
    started = time.perf_counter()
    files = inputs(tmp / "inputs")
    refs = [c.reference_for(f) for f in files]
    audio = c.audio_seconds(files)
    subq = c.bin_path("subq")
    child = str(Path(__file__).with_name("child.py"))
    variants = [SUBQ, LOOP, *extra]

    def command(variant: str, out: Path) -> list[str]:
        names = list(map(str, files))
        if variant == LOOP:
            return [sys.executable, child, "fwloop", "--out", str(out), "--beam-size", "1", *names]
        flags = extra.get(variant, "").split()
        state = ["--state", str(out / "state.db"), "--output-dir", str(out)]
        return [subq, "run", "-q", *flags, *state, *names]

    runs, summary = c.srt_process_rounds(
        rounds, variants, tmp, lambda v, out: (command(v, out), env), files, refs
    )
    result: dict[str, Any] = {
        "name": "bare_loop",
        "machine": c.machine(),
        "rounds": rounds,
        "files": len(files),
        "audio_seconds": audio,
        "variants": extra,
        "runs": runs,
        "summary": summary,
        "command": c.command_line(
            "bench_bare_loop.py", args, " ".join(f'--variant "{v}"' for v in args.variant)
        ),
    }
    ratio = c.median(c.paired(runs, SUBQ, LOOP))
    result["target_met"] = ratio <= 1.0 and summary[SUBQ]["wer"] <= summary[LOOP]["wer"] + 0.02
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    s, runs = r["summary"], r["runs"]
    rows = []
    for v, stats in s.items():
        ratios = c.paired(runs, v, LOOP)
        spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
        label = {
            SUBQ: "`subq run` (defaults)",
            LOOP: "faster-whisper loop, beam 1, no word timestamps",
        }.get(v, f"`subq run {r['variants'].get(v, '')}`")
        rows.append(
            [
                label,
                c.fmt_s(stats["wall"]),
                c.fmt_x(c.median(ratios)) + spread,
                f"{stats['wer']:.3f}",
                c.fmt_mb(stats["max_rss"]),
            ]
        )
    ratio = c.median(c.paired(runs, SUBQ, LOOP))
    return "\n".join(
        [
            f"Inputs: {r['files']} files ({r['audio_seconds']:.0f} s of audio: the 3 short clips "
            f"and 3 copies of one ~50 s mix), tiny.en int8 on the CPU, {r['rounds']} "
            "interleaved round(s), each subq run from an empty state file. Wall time is the "
            "whole process; the ratio is the median over rounds of the run's time over the "
            "loop's in the same round (range in brackets).",
            "",
            c.table(["run", "wall", "vs the loop", "WER", "peak RSS"], rows),
            "",
            f"Target (subq's defaults <= 1.0x the loop at equal WER): "
            f"**{'met' if r['target_met'] else 'NOT met'}** ({ratio:.2f}x).",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
