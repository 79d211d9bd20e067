"""Issue 16: what a worker process costs. Start time, and the IPC overhead per file.

- start: spawn to Ready (nothing heavy imported), spawn to Ready with the faster-whisper /
  openai-whisper libraries preloaded, and spawn to a loaded faster-whisper tiny.en.
- round trip: a GetStats request and its reply, between calls.
- per file: one clip transcribed with faster-whisper tiny.en already loaded (decode included),
  in this process vs through a worker (the same call, its progress and checkpoint messages
  and the reply), interleaved, median of the rounds. Both run with the same environment
  (the worker inherits this process's thread settings).

    python benchmarks/bench_worker_ipc.py [--rounds 7] [--clip podcast.mp3] [--no-torch]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--clip", default="podcast.mp3")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch preload start")
    args = parser.parse_args()

    from subq.engine import worker_protocol as p
    from subq.engine.worker import WorkerProcess

    load = p.Load("asr", "tiny.en", "cpu", "faster-whisper")

    def start(preload: tuple[str, ...] = (), model: bool = False) -> float:
        t0 = time.perf_counter()
        w = WorkerProcess("cpu", log=None, preload=preload)
        w.wait_ready()
        if model:
            assert isinstance(w.request(load), p.Loaded)
        took = time.perf_counter() - t0
        w.stop()
        return took

    starts = {
        "spawn -> Ready": [start() for _ in range(args.rounds)],
        "spawn -> Ready, faster-whisper imported": [start(("faster-whisper",)) for _ in range(3)],
        "spawn -> tiny.en loaded (faster-whisper)": [start(model=True) for _ in range(3)],
    }
    if not args.no_torch:
        starts["spawn -> Ready, torch + whisper imported"] = [start(("whisper",)) for _ in range(3)]
    for what, times in starts.items():
        print(f"{what:45s} median {ms(statistics.median(times))}  ({len(times)} runs)")

    from subq.engine import asr, media
    from subq.engine.options import TranscribeOptions

    clip = DATA / args.clip
    options = TranscribeOptions(language="en")
    model = asr.load_backend("faster-whisper", "tiny.en", "cpu")

    def in_process() -> float:
        t0 = time.perf_counter()
        audio = media.decode_audio(clip)
        asr.run_backend(
            "faster-whisper",
            model,
            audio,
            options,
            on_window=lambda cp, f: cp.to_json(),
            on_segment=lambda f: None,
        )
        return time.perf_counter() - t0

    with WorkerProcess("cpu", log=None) as w:
        w.wait_ready()
        key = w.request(load).key
        fields = {"language": "en"}

        def in_worker() -> float:
            t0 = time.perf_counter()
            reply = w.request(p.Transcribe("bench", key, str(clip), fields))
            assert isinstance(reply, p.Done), reply
            return time.perf_counter() - t0

        in_process(), in_worker()  # warm-up: first-call costs on both sides
        local, remote = [], []
        for _ in range(args.rounds):
            local.append(in_process())
            remote.append(in_worker())
        trips = []
        for _ in range(200):
            t0 = time.perf_counter()
            w.request(p.GetStats())
            trips.append(time.perf_counter() - t0)
    a, b = statistics.median(local), statistics.median(remote)
    print(f"GetStats round trip: median {ms(statistics.median(trips))} (200)")
    print(
        f"{clip.name}: in-process {ms(a)}, through a worker {ms(b)}, "
        f"overhead {ms(b - a)} ({(b / a - 1) * 100:+.1f}%), median of {args.rounds} rounds"
    )
    print(f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
