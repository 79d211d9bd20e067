"""Translation throughput: one cue at a time vs batched, on an opus-mt-sized Marian model.

The model has random weights but opus-mt's shape (d_model 512, 6 + 6 layers, 8 heads, FFN
2048, swish, vocabulary 58101 incl. synthetic tokens), is saved with save_pretrained and
loaded with `subq.engine.translate.load_translator`, so the timed path is the one subq runs
(length-sorted batches, tokenizer, generate). Random weights would ramble up to the cap, or
stop at random, so generation_config.json pins min_new_tokens = max_new_tokens: every cue
in every variant generates exactly the same number of tokens, and the comparison is fair.

    python benchmarks/bench_translation.py --quick          # < 2 min on a 2-core CPU
    python benchmarks/bench_translation.py --out bench.md   # 128 cues, appends a section
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

OPUS_MT = {  # Helsinki-NLP/opus-mt-en-de's config.json
    "vocab_size": 58101,
    "d_model": 512,
    "layers": 6,
    "heads": 8,
    "ffn": 2048,
    "activation_function": "swish",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="16 cues, batch sizes 1,4,16: under 2 minutes on a 2-core CPU",
    )
    p.add_argument("--segments", type=int, help="cues to translate (default 128; quick 16)")
    p.add_argument("--batch-sizes", help="comma-separated (default 1,4,8,16,32; quick 1,4,16)")
    p.add_argument(
        "--tokens", type=int, default=24, help="tokens generated per cue, min = max (default 24)"
    )
    p.add_argument("--beams", type=int, default=1, help="num_beams (default 1, greedy)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over all batch sizes, interleaved; the best round counts",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a small shared CPU, more threads "
        "mostly wait on each other; 0 = torch's choice)",
    )
    p.add_argument("--out", type=Path, help="append the results as a markdown section here")
    args = p.parse_args(argv)
    args.segments = args.segments or (16 if args.quick else 128)
    default_sizes = "1,4,16" if args.quick else "1,4,8,16,32"
    args.batch_sizes = [int(b) for b in (args.batch_sizes or default_sizes).split(",")]
    if 1 not in args.batch_sizes:
        args.batch_sizes.insert(0, 1)  # the baseline every ratio is against
    return args


def cues(n: int) -> list[str]:
    from translation_fixture import reference_sentences

    return list(itertools.islice(itertools.cycle(reference_sentences()), n))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import transformers
    from subq.engine.translate import load_translator
    from translation_fixture import build_marian, reference_words

    if args.threads and args.device == "cpu":
        torch.set_num_threads(args.threads)
    texts = cues(args.segments)
    with tempfile.TemporaryDirectory(prefix="subq-bench-marian-") as tmp:
        t0 = time.perf_counter()
        folder = build_marian(
            Path(tmp) / "opus-mt-sized",
            words=reference_words(),
            vocab_size=OPUS_MT["vocab_size"],
            d_model=OPUS_MT["d_model"],
            layers=OPUS_MT["layers"],
            heads=OPUS_MT["heads"],
            ffn=OPUS_MT["ffn"],
            activation_function=OPUS_MT["activation_function"],
            num_beams=args.beams,
            min_new_tokens=args.tokens,
            max_new_tokens=args.tokens,
        )
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        translator = load_translator(str(folder), args.device)
        loaded = time.perf_counter() - t0
    params = sum(p.numel() for p in translator.model.parameters())
    print(
        f"model: random Marian, {params / 1e6:.1f} M parameters, built+saved in {built:.1f} s, "
        f"loaded in {loaded:.1f} s; {args.segments} cues, {args.tokens} new tokens each "
        f"(min = max), num_beams {args.beams}",
        flush=True,
    )

    translator.translate(texts[:2], "en", "de", batch_size=2)  # warm-up: allocator, kernels
    best: dict[int, float] = {}
    outputs: dict[int, list[str]] = {}
    for round_ in range(args.repeat):
        for size in args.batch_sizes:
            _sync(args.device)
            t0 = time.perf_counter()
            out = translator.translate(texts, "en", "de", batch_size=size)
            _sync(args.device)
            elapsed = time.perf_counter() - t0
            best[size] = min(best.get(size, elapsed), elapsed)
            outputs[size] = out
            print(
                f"  round {round_ + 1}: batch {size:>3}: {elapsed:7.2f} s "
                f"({len(texts) / elapsed:6.2f} cues/s)",
                flush=True,
            )

    words = {len(t.split()) for out in outputs.values() for t in out}
    info = {
        "device": _device_name(args.device),
        "torch threads": str(torch.get_num_threads()) if args.device == "cpu" else "-",
        "torch / transformers": f"{torch.__version__} / {transformers.__version__}",
        "model": f"random-weight Marian, opus-mt-en-de shape ({params / 1e6:.1f} M params: "
        f"d_model 512, 6+6 layers, 8 heads, FFN 2048, vocab 58101)",
        "generation": f"{args.tokens} new tokens per cue (min_new_tokens = max_new_tokens), "
        f"num_beams {args.beams}; words per output seen: "
        f"{', '.join(map(str, sorted(words)))}",
        "input": f"{args.segments} cues: references.json sentences, repeated",
        "timing": f"best of {args.repeat} interleaved round(s) per batch size",
    }
    table = render(best, outputs, len(texts), args.tokens)
    title = f"Translation batching, {'quick' if args.quick else 'full'} run"
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    section = "\n".join(
        [
            f"## {title} ({stamp})",
            "",
            *(f"- {k}: {v}" for k, v in info.items()),
            "",
            table,
            "",
        ]
    )
    print()
    print(section)
    if args.out:
        with args.out.open("a", encoding="utf-8") as f:
            f.write(section + "\n")
        print(f"appended to {args.out}")
    return 0


def render(best: dict[int, float], outputs: dict[int, list[str]], n: int, tokens: int) -> str:
    base = best[1]
    rows = [
        "| batch size | time (s) | cues/s | new tokens/s | vs batch 1 | same texts as batch 1 |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for size in sorted(best):
        same = sum(a == b for a, b in zip(outputs[size], outputs[1], strict=True))
        rows.append(
            f"| {size} | {best[size]:.2f} | {n / best[size]:.2f} | {n * tokens / best[size]:.0f} "
            f"| {base / best[size]:.2f}x | {'yes' if same == n else f'{same}/{n}'} |"
        )
    return "\n".join(rows)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}, {os.cpu_count()} cores"


if __name__ == "__main__":
    raise SystemExit(main())
