"""Figure 4d, batched openai-whisper (engine/asr/whisper_batched.py) vs sequential openai-whisper.

tests/data/story.mp3 (about 3 minutes of distinct sentences in paragraphs with pauses) is
transcribed with the bundled tiny.en on the CPU, the model loaded once after a warm-up:
openai-whisper's sequential loop (subq's reference backend) and the batched mode at batch 8
(Silero VAD chunks of <= 30 s, 8 mels per `whisper.decode` call, word times from the decode
call's encoder output). Variants interleaved round by round; medians; the time ratio is the
median of per-round ratios. WER with EnglishTextNormalizer on both sides.

    python benchmarks/bench_whisper_batched.py --quick   # 1 round
    python benchmarks/bench_whisper_batched.py           # 2 rounds
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

VARIANTS = {"whisper-sequential": 0, "whisper-batched-8": 8}


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    args = p.parse_args(argv)
    rounds = c.rounds(args, quick=1, full=2)
    c.isolate(Path(tempfile.mkdtemp(prefix="subq-bench-wbatched-")))
    from subq.engine import asr, media
    from subq.engine.asr.whisper_batched import transcribe_whisper_batched

    started = time.perf_counter()
    c.bundled_checkpoint()
    audio = media.decode_audio(c.DATA / "story.mp3")
    ref = c.references()["story.mp3"]
    model = asr.load_whisper("tiny.en", "cpu")
    base = asr.TranscribeOptions(language="en")
    calls: dict[str, int] = {}

    def transcribe(batch: int, samples: Any) -> asr.Transcript:
        if batch:
            options = dataclasses.replace(base, batch_size=batch)
            return transcribe_whisper_batched(model, samples, options)
        return asr.transcribe(model, samples, base)

    def run(variant: str) -> tuple[float, float]:
        t0 = time.perf_counter()
        result = transcribe(VARIANTS[variant], audio)
        wall = time.perf_counter() - t0
        calls[variant] = result.windows
        return wall, c.corpus_wer([ref], [" ".join(s.text for s in result.segments)])

    for batch in VARIANTS.values():
        transcribe(batch, audio[: 10 * c.RATE])  # warm-up
    runs, summary = c.wall_and_wer_rounds(rounds, list(VARIANTS), run)
    result: dict[str, Any] = {
        "name": "whisper-batched",
        "machine": c.machine(),
        "rounds": rounds,
        "audio_seconds": len(audio) / c.RATE,
        "runs": runs,
        "summary": summary,
        "model_calls": calls,
        "vs_sequential": {v: c.median(c.paired(runs, v, "whisper-sequential")) for v in VARIANTS},
        "command": c.command_line("bench_whisper_batched.py", args),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    s, audio = r["summary"], r["audio_seconds"]
    rows = [
        [
            f"`{v}`",
            batch or "off",
            r["model_calls"].get(v, ""),
            c.fmt_s(s[v]["wall"]),
            c.fmt_x(r["vs_sequential"][v]),
            f"{audio / s[v]['wall']:.1f}x",
            f"{s[v]['wer']:.3f}",
        ]
        for v, batch in VARIANTS.items()
    ]
    ratio = r["vs_sequential"]["whisper-batched-8"]
    return "\n".join(
        [
            f"Input: tests/data/story.mp3 ({audio:.0f} s), tiny.en on the CPU, model loaded "
            f"once, transcription only; {r['rounds']} interleaved round(s); medians; the "
            'ratio is the median of per-round ratios to `whisper-sequential`. "model calls" '
            "counts 30 s windows (sequential) or `whisper.decode` calls on a batch (batched).",
            "",
            c.table(
                [
                    "variant",
                    "ASR batch",
                    "model calls",
                    "transcribe",
                    "vs sequential",
                    "speed",
                    "WER",
                ],
                rows,
            ),
            "",
            f"Batched openai-whisper at batch 8 took {ratio:.2f}x sequential's time at WER "
            f"{s['whisper-batched-8']['wer']:.3f} vs {s['whisper-sequential']['wer']:.3f}. "
            + (
                "It pays even on two CPU cores with tiny.en, most likely because a decoder step "
                "of this small model is mostly fixed per-call cost, which 8 rows share, and "
                "sequential "
                "word timing runs the encoder a second time per window (whisper's aligner), "
                "where the batched mode aligns with the encoder output it already has. "
                if ratio < 0.9
                else "On two CPU cores batching does not pay here: the matrix products are "
                "already as wide as the cores, and every row runs until the longest chunk "
                "ends. "
            )
            + "What it gives up is not in the ratio: the previous-text prompt and temperature "
            "fallback between chunks. The mode is built for a GPU; benchmarks/gpu/check.sh "
            "measures it there.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
