"""The best CPU peer a user could run by hand (issue 28): faster-whisper in N processes of
one thread each, pulling files from one list, longest first, each writing an SRT.

    python benchmarks/peer_fw.py --out DIR [--procs 2] [--no-words] F...
    python benchmarks/peer_fw.py --out DIR --batched 8 F...   # BatchedInferencePipeline

Same decoding as subq's default run: tiny.en (the bundled weights), int8 on the CPU, greedy
(beam 1) with the library's temperature fallback, the previous text as prompt, English,
word timestamps unless --no-words. One cue per segment.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

_model: Any = None
_args: Any = None


def _ts(t: float) -> str:
    ms = round(t * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _load(args: argparse.Namespace, threads: int) -> None:
    global _model, _args
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from subq.engine.bundled import bundled_model_dir

    _args = args
    _model = WhisperModel(
        str(bundled_model_dir()), device="cpu", compute_type="int8", cpu_threads=threads
    )
    if args.batched:
        _model = BatchedInferencePipeline(_model)


def _one(name: str) -> str:
    extra: dict[str, Any] = {"batch_size": _args.batched} if _args.batched else {}
    segments, _info = _model.transcribe(
        name, language="en", beam_size=1, word_timestamps=not _args.no_words, **extra
    )
    lines = []
    for i, s in enumerate(segments, 1):
        lines += [str(i), f"{_ts(s.start)} --> {_ts(s.end)}", s.text.strip(), ""]
    (Path(_args.out) / (Path(name).stem + ".srt")).write_text("\n".join(lines), encoding="utf-8")
    return name


def _seconds(path: str) -> float:
    import av

    with av.open(path) as container:
        return float(container.duration or 0) / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--no-words", action="store_true")
    p.add_argument("--batched", type=int, default=0, help="batch size (one process)")
    p.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    files = sorted(args.files, key=_seconds, reverse=True)  # longest first
    if args.batched or args.procs == 1:
        _load(args, threads=len(os.sched_getaffinity(0)))
        for name in files:
            _one(name)
        return 0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.procs, initializer=_load, initargs=(args, 1)) as pool:
        for _ in pool.imap_unordered(_one, files, chunksize=1):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
