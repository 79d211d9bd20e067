"""Figure 4b, decoding options per backend: compute type, beam, word timestamps.

In this process, each backend's model loaded once (after a warm-up), the same ~50 s clips
transcribed through subq's own code (asr.transcribe / asr.faster_whisper.transcribe_ct2), one option
changed at a time from subq's defaults (greedy, word timestamps on; int8 for CTranslate2 on
the CPU). Variants are interleaved round by round; medians. This is what the "Defaults
chosen" section reads for compute type and beam.

    python benchmarks/bench_decoding.py --quick     # 1 clip, 1 round
    python benchmarks/bench_decoding.py             # 3 clips, 2 rounds
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

# name -> (backend, compute type, beam, word timestamps)
VARIANTS: dict[str, tuple[str, str, int | None, bool]] = {
    "ct2-int8": ("faster-whisper", "int8", None, True),
    "ct2-float32": ("faster-whisper", "float32", None, True),
    "ct2-int8-beam5": ("faster-whisper", "int8", 5, True),
    "ct2-int8-no-words": ("faster-whisper", "int8", None, False),
    "whisper": ("whisper", "float32", None, True),
    "whisper-beam5": ("whisper", "float32", 5, True),
    "whisper-no-words": ("whisper", "float32", None, False),
}


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    p.add_argument("--clips", type=int, help="~50 s clips (default: quick 1, full 3)")
    args = p.parse_args(argv)
    rounds = c.rounds(args, quick=1, full=2)
    n_clips = args.clips or (1 if args.quick else 3)
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-decoding-"))
    c.isolate(tmp)
    from subq.engine import asr, media
    from subq.engine.asr.faster_whisper import load_ct2, transcribe_ct2

    started = time.perf_counter()
    c.bundled_checkpoint()
    files = c.make_mixes(tmp / "inputs", n_clips)
    audio = [media.decode_audio(f) for f in files]
    refs = [c.reference_for(f) for f in files]
    seconds = sum(len(a) for a in audio) / c.RATE
    models: dict[tuple[str, str], Any] = {
        ("whisper", "float32"): asr.load_whisper("tiny.en", "cpu")
    }
    for compute in ("int8", "float32"):
        models[("faster-whisper", compute)] = load_ct2("tiny.en", "cpu", compute_type=compute)
    base = asr.TranscribeOptions(language="en")

    def run(variant: str) -> tuple[float, float]:
        backend, compute, beam, words = VARIANTS[variant]
        model = models[(backend, compute)]
        options = dataclasses.replace(base, beam_size=beam, word_timestamps=words)
        go = transcribe_ct2 if backend == "faster-whisper" else asr.transcribe
        t0 = time.perf_counter()
        hyps = [" ".join(s.text for s in go(model, a, options).segments) for a in audio]
        return time.perf_counter() - t0, c.corpus_wer(refs, hyps)

    for variant in ("whisper", "ct2-int8", "ct2-float32"):  # warm-up: JIT, first inference
        go = transcribe_ct2 if VARIANTS[variant][0] == "faster-whisper" else asr.transcribe
        go(models[VARIANTS[variant][:2]], audio[0][: 10 * c.RATE], base)
    runs, summary = c.wall_and_wer_rounds(rounds, list(VARIANTS), run)
    result: dict[str, Any] = {
        "name": "decoding",
        "machine": c.machine(),
        "rounds": rounds,
        "clips": n_clips,
        "audio_seconds": seconds,
        "runs": runs,
        "summary": summary,
        "footprints": {f"{b}/{ct}": asr.footprint(m) for (b, ct), m in models.items()},
        "command": c.command_line(
            "bench_decoding.py", args, f"--clips {n_clips}" if args.clips else ""
        ),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    s, audio = r["summary"], r["audio_seconds"]
    ref = s["ct2-int8"]["wall"]
    rows = []
    for v, (backend, compute, beam, words) in VARIANTS.items():
        if v not in s:
            continue
        rows.append(
            [
                f"`{v}`",
                backend,
                compute,
                beam or "1 (greedy)",
                "on" if words else "off",
                c.fmt_s(s[v]["wall"]),
                c.fmt_x(s[v]["wall"] / ref),
                f"{audio / s[v]['wall']:.1f}x",
                f"{s[v]['wer']:.3f}",
            ]
        )
    fp = r["footprints"]
    return "\n".join(
        [
            f"Inputs: {r['clips']} clip(s) of about 50 s ({audio:.0f} s of audio), tiny.en on the "
            f"CPU, models loaded once, transcription only; {r['rounds']} interleaved round(s); "
            "medians. First row = subq's default on the CPU (backend auto = faster-whisper int8).",
            "",
            c.table(
                [
                    "variant",
                    "backend",
                    "compute",
                    "beam",
                    "word times",
                    "transcribe",
                    "vs default",
                    "speed",
                    "WER",
                ],
                rows,
            ),
            "",
            "Model footprint as subq reports it: "
            + ", ".join(f"{k} {c.fmt_mb(v)}" for k, v in fp.items())
            + ".",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
