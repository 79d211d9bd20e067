"""Figure 4, whole batch vs peers: same tiny.en weights, same files, whole processes.

* `subq run` as it comes (backend auto = faster-whisper, CTranslate2 int8, on the CPU;
  greedy, word timestamps on)
* `subq run --backend whisper` (openai-whisper, the reference backend, same decoding options)
* the `whisper` CLI (openai-whisper's console script), all files in one invocation, on the
  checkpoint subq converts from the bundled weights, as-is: its defaults are beam 5 /
  best_of 5 and no word timestamps; optionally also with `--beam_size 1 --best_of 1`
* a faster-whisper loop: a script that loads WhisperModel once and loops over the files
  (faster-whisper's own defaults: beam 5, best_of 5, no VAD, no word timestamps)

Inputs are clips of about 50 s made by concatenating the committed clips' decoded audio
(benchmarks/common.make_mixes, written as WAV with PyAV). WER is over all files together,
against the concatenated reference texts, EnglishTextNormalizer on both sides. The whisper
CLI needs an `ffmpeg` program: a symlink to imageio-ffmpeg's binary is put on its PATH only.

    python benchmarks/bench_peers.py --quick         # 1 clip, 1 round, no beam-1 CLI run
    python benchmarks/bench_peers.py                 # 3 clips, 2 rounds, with beam-1 CLI run
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

LABELS = {
    "subq": "`subq run` (default: auto = faster-whisper on the CPU)",
    "subq-whisper": "`subq run --backend whisper`",
    "whisper-cli": "`whisper` CLI as-is (beam 5, best_of 5)",
    "whisper-cli-beam1": "`whisper` CLI `--beam_size 1 --best_of 1`",
    "fw-loop": "faster-whisper loop as-is (beam 5, best_of 5)",
    "fw-loop-beam1": "faster-whisper loop `beam_size=1`",
}


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    p.add_argument("--clips", type=int, help="~50 s clips (default: quick 1, full 3)")
    p.add_argument(
        "--beam1",
        action="store_true",
        default=None,
        help="also run the peers with beam 1 (default: full mode only)",
    )
    args = p.parse_args(argv)
    rounds = c.rounds(args, quick=1, full=2)
    n_clips = args.clips or (1 if args.quick else 3)
    beam1 = args.beam1 if args.beam1 is not None else not args.quick
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-peers-"))
    env = c.isolate(tmp)
    started = time.perf_counter()
    ckpt = c.bundled_checkpoint()
    files = c.make_mixes(tmp / "inputs", n_clips)
    refs = [c.reference_for(f) for f in files]
    audio = c.audio_seconds(files)
    peer_env = dict(env, PATH=f"{c.ffmpeg_dir(tmp)}{os.pathsep}{env.get('PATH', '')}")
    subq, whisper = c.bin_path("subq"), c.bin_path("whisper")
    child = str(Path(__file__).with_name("child.py"))

    def command(variant: str, out: Path) -> tuple[list[str], dict[str, str]]:
        names = list(map(str, files))
        if variant.startswith("subq"):
            extra = ["--backend", "whisper"] if variant == "subq-whisper" else []
            return [
                subq,
                "run",
                "-q",
                *extra,
                "--state",
                str(out / "s.db"),
                "--output-dir",
                str(out),
                *names,
            ], env
        if variant.startswith("whisper-cli"):
            extra = ["--beam_size", "1", "--best_of", "1"] if variant.endswith("beam1") else []
            return [
                whisper,
                *names,
                "--model",
                str(ckpt),
                "--language",
                "en",
                "--fp16",
                "False",
                "--output_format",
                "srt",
                "--output_dir",
                str(out),
                *extra,
            ], peer_env
        extra = ["--beam-size", "1"] if variant.endswith("beam1") else []
        return [sys.executable, child, "fwloop", "--out", str(out), *extra, *names], env

    variants = ["subq", "subq-whisper", "whisper-cli", "fw-loop"]
    if beam1:
        variants += ["whisper-cli-beam1", "fw-loop-beam1"]
    runs, summary = c.srt_process_rounds(rounds, variants, tmp, command, files, refs)
    cli = summary["whisper-cli"]
    ours = summary["subq"]
    result: dict[str, Any] = {
        "name": "peers",
        "machine": c.machine(),
        "rounds": rounds,
        "clips": n_clips,
        "audio_seconds": audio,
        "runs": runs,
        "summary": summary,
        "target_met": (
            c.median(c.paired(runs, "subq", "whisper-cli")) <= 0.5
            and ours["wer"] <= cli["wer"] + 0.02
        ),
        "command": c.command_line(
            "bench_peers.py",
            args,
            " ".join(
                x
                for x in (
                    f"--clips {n_clips}" if args.clips else "",
                    "--beam1" if args.beam1 else "",
                )
                if x
            ),
        ),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def paired(r: dict[str, Any], variant: str, base: str = "whisper-cli") -> list[float]:
    return c.paired(r["runs"], variant, base)


def markdown(r: dict[str, Any]) -> str:
    s, audio = r["summary"], r["audio_seconds"]
    rows = c.process_rows(r, LABELS, "whisper-cli")
    ours, cli = s["subq"], s["whisper-cli"]
    ratio = c.median(paired(r, "subq"))
    met = ratio <= 0.5 and ours["wer"] <= cli["wer"] + 0.02
    lines = [
        f"Inputs: {r['clips']} clip(s) of about 50 s ({audio:.0f} s of audio), tiny.en "
        f"(the bundled weights; the whisper CLI gets subq's converted checkpoint), CPU; "
        f"{r['rounds']} interleaved round(s). Wall time is the whole process: start, imports, "
        "model load, decoding the audio, transcription, writing SRT; the table gives the "
        "median wall time and, as the ratio, the median over rounds of the variant's time "
        "over the CLI's time in the same round (range in brackets): the machine's load moves "
        "from round to round, and a round shares it.",
        "",
        c.table(
            ["variant", "wall", "vs whisper CLI", "speed (audio/wall)", "WER", "peak RSS"], rows
        ),
        "",
        f"Target (subq's default run <= 0.5 x the whisper CLI's wall time, WER no worse than "
        f"+0.02): **{'met' if met else 'NOT met'}** — {ratio:.2f}x the CLI's time, WER "
        f"{ours['wer']:.3f} vs {cli['wer']:.3f}.",
    ]
    wh = s["subq-whisper"]
    wh_ratio = c.median(paired(r, "subq-whisper"))
    wh_ok = wh_ratio <= 0.5 and wh["wer"] <= cli["wer"] + 0.02
    lines += [
        "",
        f"With `--backend whisper` (openai-whisper, same decoding options): "
        f"{wh_ratio:.2f}x the CLI's time, WER {wh['wer']:.3f}: the target is "
        f"{'met' if wh_ok else 'not met'} that way.",
    ]
    if "whisper-cli-beam1" in s:
        b1 = s["whisper-cli-beam1"]
        lines += [
            "",
            "Against the CLI at beam 1 / best_of 1 (the greedy decoding subq uses): "
            f"subq takes {c.median(paired(r, 'subq', 'whisper-cli-beam1')):.2f}x its "
            f"time (WER {ours['wer']:.3f} vs {b1['wer']:.3f}), `--backend "
            f"whisper` {c.median(paired(r, 'subq-whisper', 'whisper-cli-beam1')):.2f}x"
            "; subq also computes word timestamps, which the CLI skips by default "
            "(their cost: figure 4b).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
