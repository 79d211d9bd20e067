"""What a forced prefix costs in CTranslate2's Whisper `generate` (issue 28's note).

Why the temperature fallback still samples on a replica on the CPU: seeded sampling on the
model as loaded (engine/asr/ct2_sampling.py) calls `generate` again each time its draw leaves
the greedy path, with every token so far as a forced prefix. CTranslate2 forwards the prompt
up to the task tokens in one pass but steps through text after <|startoftranscript|> one
token at a time, and keeps no decoder cache between calls. This times one call per prefix
length (tiny.en, the bundled weights, int8 on the CPU, one encoded 30 s window of long.mp3).

    python benchmarks/bench_ct2_prefix.py
"""

from __future__ import annotations

import sys
import time

import common as c
import numpy as np


def main() -> int:
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor
    from subq.engine import media
    from subq.engine.asr.faster_whisper import load_ct2

    model = load_ct2("tiny.en", "cpu").model.model
    audio = media.decode_audio(c.DATA / "long.mp3")
    features = FeatureExtractor(feature_size=80)(audio[:480_000])[:, :3000]
    encoded = model.encode(ctranslate2.StorageView.from_array(features[None].astype(np.float32)))
    sot = 50257  # <|startoftranscript|> of the English-only vocabulary
    tokens = model.generate(encoded, [[sot]], max_length=448, beam_size=1)[0].sequences_ids[0]
    text = (tokens * 10)[:200]
    print("| prefix tokens | ms per call (logits) | ms per call (no logits) |\n|---|---|---|")
    for length in (0, 25, 50, 100, 200):
        row = []
        for logits in (True, False):
            started = time.perf_counter()
            for _ in range(3):
                model.generate(
                    encoded,
                    [[sot, *text[:length]]],
                    max_length=2 * (length + 2),
                    beam_size=1,
                    sampling_topk=1,
                    return_logits_vocab=logits,
                )
            row.append((time.perf_counter() - started) / 3 * 1000)
        print(f"| {length} | {row[0]:.1f} | {row[1]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
