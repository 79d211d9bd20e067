"""Figure 11, subq against each library's own `transcribe` on long readings (issue 21).

For each long reading (tests/data/make_readings.py) and each backend, in one process with
tiny.en on the CPU: the library's `transcribe` with subq's default options (greedy,
word timestamps, previous-text prompt) on the file's samples; subq's loop with the gap
refill off (which must equal the library's where no window sampled); and subq's default
(refill on). Reported: WER against the spoken text, segments, the longest stretch with no
segment, windows that fell back to sampling, what the refill decoded, and the wall time.
Then the first pass's cost (the whole file's loudest log-mel value) per audio hour, on a
file made by looping reading.mp3's packets.

    python benchmarks/bench_parity.py            # both readings, both backends
    python benchmarks/bench_parity.py --quick    # reading.mp3 with faster-whisper only

The refill-off run is skipped where the default refilled nothing: `gaps.fill` then returns
the segments it was given, so the two are the same run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

sys.path.insert(0, str(c.ROOT / "tests"))
from library_runs import library_segments
from long_media import loop_clip

READINGS = ("reading.mp3", "reading_long.mp3")


def segments_of(items: Any) -> list[tuple[float, float, str]]:
    return [(float(s.start), float(s.end), s.text.strip()) for s in items]


def longest_gap(segs: list[tuple[float, float, str]], duration: float) -> float:
    edges = [0.0, *(t for a, b, _ in segs for t in (a, b)), duration]
    return max(edges[i + 1] - edges[i] for i in range(0, len(edges) - 1, 2))


def differing(ours: list[tuple[float, float, str]], theirs: list[tuple[float, float, str]]) -> int:
    """Segments that differ in text or in either time by more than a microsecond."""
    pairs = zip(ours, theirs, strict=False)
    diff = sum(1 for a, b in pairs if a[2] != b[2] or abs(a[0] - b[0]) + abs(a[1] - b[1]) > 2e-6)
    return diff + abs(len(ours) - len(theirs))


def library_run(backend: str, path: Path) -> list:
    """The library's own transcribe (tests/library_runs.py), with subq's filter for
    invented text applied to it as to subq's (the comparison is of the decoding)."""
    from subq.engine import asr

    raw = tuple(asr.Segment(*row) for row in library_segments(backend, str(path)))
    return list(asr.drop_invented(raw, asr.TranscribeOptions(language="en")))


def one_file(name: str, backend: str, model: Any) -> list[dict[str, Any]]:
    from subq.engine import asr, media

    path = c.DATA / name
    reference = c.references()[name]
    audio = media.decode_audio(path)
    duration = len(audio) / c.RATE
    rows = []

    def row(variant: str, segs: list, wall: float, **extra: Any) -> dict[str, Any]:
        plain = segments_of(segs)
        text = " ".join(t for _, _, t in plain)
        return {
            "file": name,
            "minutes": duration / 60,
            "backend": backend,
            "variant": variant,
            "wer": c.corpus_wer([reference], [text]),
            "segments": len(plain),
            "longest_gap": longest_gap(plain, duration),
            "wall": wall,
            "plain": plain,
            **extra,
        }

    run = asr.transcribe if backend == "whisper" else _ct2
    t0 = time.perf_counter()
    library = library_run(backend, path)
    rows.append(row("library transcribe", library, time.perf_counter() - t0))
    t0 = time.perf_counter()
    default = run(model, media.open_audio(path), asr.TranscribeOptions(language="en"))
    wall = time.perf_counter() - t0
    refilled = "; ".join(f"{r.start:.1f}-{r.end:.1f} s: {r.segments}" for r in default.refilled)
    if default.refilled:
        t0 = time.perf_counter()
        off = run(
            model, media.open_audio(path), asr.TranscribeOptions(language="en", fill_gaps=False)
        )
        rows.append(
            row("subq, refill off", list(off.segments), time.perf_counter() - t0,
                fallbacks=off.stats.get("fallbacks"))
        )  # fmt: skip
    else:
        same = dict(fallbacks=default.stats.get("fallbacks"), same_run=True)
        rows.append(row("subq, refill off", list(default.segments), wall, **same))
    rows.append(
        row("subq default (refill on)", list(default.segments), wall,
            fallbacks=default.stats.get("fallbacks"), refilled=refilled or "none")
    )  # fmt: skip
    for r in rows[1:]:
        r["differs_from_library"] = differing(r["plain"], rows[0]["plain"])
    return rows


def _ct2(model: Any, audio: Any, options: Any) -> Any:
    from subq.engine.asr.faster_whisper import transcribe_ct2

    return transcribe_ct2(model, audio, options)


def first_pass_cost(minutes: float, tmp: Path) -> dict[str, float]:
    """Seconds the first pass takes on a file of `minutes`, per backend, per audio hour."""
    from functools import partial

    from faster_whisper.feature_extractor import FeatureExtractor
    from subq.engine import media
    from subq.engine.asr.faster_whisper_loop import file_loudest
    from subq.engine.asr.loudness import loudest, whisper_frames
    from subq.engine.asr.whisper_loop import log10_mel

    path = tmp / f"reading-{minutes:g}min.mp3"
    seconds = loop_clip(c.DATA / "reading.mp3", path, minutes)
    out = {}
    t0 = time.perf_counter()
    file_loudest(FeatureExtractor(), media.open_audio(path))
    out["faster-whisper"] = (time.perf_counter() - t0) * 3600 / seconds
    t0 = time.perf_counter()
    loudest(media.open_audio(path), partial(log10_mel, n_mels=80), whisper_frames)
    out["whisper"] = (time.perf_counter() - t0) * 3600 / seconds
    t0 = time.perf_counter()
    source = media.open_audio(path)
    source.length_within(sys.maxsize)  # decoding alone, for scale
    out["decode only"] = (time.perf_counter() - t0) * 3600 / seconds
    return out


def main() -> int:
    args = c.base_parser(__doc__).parse_args()
    c.rounds(args)
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-parity-"))
    c.isolate(tmp)
    from subq.engine import asr
    from subq.engine.asr.faster_whisper import load_ct2

    readings = READINGS[:1] if args.quick else READINGS
    backends = ("faster-whisper",) if args.quick else ("faster-whisper", "whisper")
    rows: list[dict[str, Any]] = []
    for backend in backends:
        model = (
            asr.load_whisper("tiny.en", "cpu")
            if backend == "whisper"
            else load_ct2("tiny.en", "cpu")
        )
        for name in readings:
            rows += one_file(name, backend, model)
    cost = first_pass_cost(10 if args.quick else 60, tmp)
    table = c.table(
        ("file", "backend", "run", "WER", "segments", "longest gap", "sampled windows",
         "segments differing from the library's", "refilled", "wall"),
        [
            (f"{r['file']} ({r['minutes']:.1f} min)", r["backend"], r["variant"], f"{r['wer']:.3f}",
             r["segments"], f"{r['longest_gap']:.1f} s", r.get("fallbacks", "n/a"),
             r.get("differs_from_library", "-"), r.get("refilled", "-")
             + (" (same run as the default)" if r.get("same_run") else ""), c.fmt_s(r["wall"]))
            for r in rows
        ],
    )  # fmt: skip
    pass_line = (
        f"First pass (the whole file's loudest log-mel value), per audio hour on a "
        f"{60 if not args.quick else 10}-minute file: "
        f"faster-whisper {cost['faster-whisper']:.1f} s, "
        f"openai-whisper {cost['whisper']:.1f} s, of which decoding the file alone "
        f"{cost['decode only']:.1f} s."
    )
    markdown = "\n\n".join(
        [
            f"Reproduce: `{c.command_line('bench_parity.py', args)}`. "
            f"Ran: {c.machine_line(c.machine())}.",
            table,
            pass_line,
        ]
    )
    for r in rows:
        r.pop("plain")
    return c.finish(args, {"markdown": markdown, "rows": rows, "first_pass": cost})


if __name__ == "__main__":
    sys.exit(main())
