"""Figure 16, subq against the best CPU peer (issue 28): whole processes, same tiny.en
weights, same files, same decoding (greedy with the temperature fallback, the previous
text as prompt, English), interleaved rounds, ratios taken within a round.

* `subq run` as it comes (two CPU workers of one thread each on two cores)
* two faster-whisper processes of one thread each pulling from one list, longest file
  first, word timestamps on (benchmarks/peer_fw.py): what a user can do by hand
* the same without word timestamps
* faster-whisper's BatchedInferencePipeline, batch 8, one process on every core

whisper.cpp and whisperX rows of the issue's table are not rerun here: neither is in this
project's environment (whisper.cpp needs a ggml file of the weights, whisperX pyannote).

Inputs: six files of 8 s to 186 s (414 s of speech, distinct sentences), all WAV so that a
file's size follows its length, given in an order that puts the longest file last.

    python benchmarks/bench_cpu_peer.py --quick      # 1 round
    python benchmarks/bench_cpu_peer.py              # 5 rounds
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common as c

LABELS = {
    "subq": "`subq run` (defaults: 2 CPU workers × 1 thread)",
    "fw-2proc-words": "2 faster-whisper processes × 1 thread, longest first, word timestamps",
    "fw-2proc": "the same without word timestamps",
    "fw-batched-8": "faster-whisper BatchedInferencePipeline, batch 8",
}
PEER = "fw-2proc-words"


def inputs(folder: Path) -> list[Path]:
    """podcast, three ~50 s mixes, long, story: WAV, the longest last."""
    import av
    import numpy as np
    from subq.engine.media import decode_audio

    mixes = c.make_mixes(folder, 3, fmt="wav")
    out = []
    for name in ("podcast.mp3", None, "long.mp3", None, None, "story.mp3"):
        if name is None:
            out.append(mixes.pop(0))
            continue
        path = folder / f"{Path(name).stem}.wav"
        pcm = (np.clip(decode_audio(c.DATA / name), -1, 1) * 32767).astype(np.int16)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("pcm_s16le", rate=c.RATE)
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = c.RATE
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        path.with_suffix(".ref.txt").write_text(c.references()[name], encoding="utf-8")
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    p = c.base_parser(__doc__)
    args = p.parse_args(argv)
    rounds = c.rounds(args, quick=1, full=5)
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-cpu-peer-"))
    env = c.isolate(tmp)
    started = time.perf_counter()
    files = inputs(tmp / "inputs")
    refs = [c.reference_for(f) for f in files]
    audio = c.audio_seconds(files)
    peer = str(Path(__file__).with_name("peer_fw.py"))

    def command(variant: str, out: Path) -> tuple[list[str], dict[str, str]]:
        names = list(map(str, files))
        if variant == "subq":
            state = ["--state", str(out / "s.db")]  # a new, empty state file every run
            return [c.bin_path("subq"), "run", "-q", *state, "--output-dir", str(out), *names], env
        extra = {"fw-2proc": ["--no-words"], "fw-batched-8": ["--batched", "8"]}.get(variant, [])
        return [sys.executable, peer, "--out", str(out), *extra, *names], env

    variants = list(LABELS)
    runs, summary = c.srt_process_rounds(rounds, variants, tmp, command, files, refs)
    ratio = c.median(c.paired(runs, "subq", PEER))
    result: dict[str, Any] = {
        "name": "cpu_peer",
        "machine": c.machine(),
        "rounds": rounds,
        "audio_seconds": audio,
        "files": [f.name for f in files],
        "runs": runs,
        "summary": summary,
        "ratio": ratio,
        "target_met": ratio <= 1.0 and summary["subq"]["wer"] <= summary[PEER]["wer"] + 0.01,
        "command": c.command_line("bench_cpu_peer.py", args),
    }
    result["elapsed"] = time.perf_counter() - started
    result["markdown"] = markdown(result)
    return c.finish(args, result)


def markdown(r: dict[str, Any]) -> str:
    s, audio = r["summary"], r["audio_seconds"]
    rows = c.process_rows(r, LABELS, "subq")
    ours, peer = s["subq"], s[PEER]
    return "\n".join(
        [
            f"Inputs: {len(r['files'])} files ({audio:.0f} s of speech), WAV, the longest "
            f"last; tiny.en, CPU; {r['rounds']} interleaved round(s), each run from an empty "
            "state file. Wall time is the whole process; the ratio is the median over rounds "
            "of the run's time over subq's in the same round (range in brackets).",
            "",
            c.table(["run", "wall", "vs subq", "speed (audio/wall)", "WER", "peak RSS"], rows),
            "",
            f"Target (subq's defaults at or below 1.0x the two-process peer with word "
            f"timestamps, WER within +0.01): **{'met' if r['target_met'] else 'NOT met'}** — "
            f"subq takes {r['ratio']:.2f}x the peer's time, WER {ours['wer']:.3f} vs "
            f"{peer['wer']:.3f}.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
