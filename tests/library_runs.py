"""Each library's own `transcribe`, run in a child process beside the test's own run.

Why a child: the reference runs are minutes of audio on both backends; run beside subq's
run on the other core, the pair takes about the time of the longer one instead of the
sum (the suite stays within its time). The child decodes the file with PyAV exactly as
subq does and prints the library's segments as JSON.

    python library_runs.py BACKEND FILE    # one JSON list of [start, end, text, nsp, lp]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def start(backend: str, path: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(Path(__file__)), backend, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=HERE,
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> list:
    """The library's segments as `asr.Segment`s, with subq's own filter for invented text
    applied to them as to subq's (the comparison is of the decoding, not the filter)."""
    from subq.engine import asr

    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    raw = tuple(asr.Segment(*row) for row in json.loads(out.strip().splitlines()[-1]))
    return list(asr.drop_invented(raw, asr.TranscribeOptions(language="en")))


def library_segments(backend: str, path: str) -> list:
    """The library's own transcribe of `path` with subq's default options, as plain rows."""
    from subq.engine import asr, media

    options = asr.TranscribeOptions(language="en")
    audio = media.decode_audio(Path(path))
    if backend == "whisper":
        import whisper

        result = whisper.transcribe(
            asr.load_whisper("tiny.en", "cpu"), audio, **options.whisper_kwargs()
        )
        rows = [
            (s["start"], s["end"], s["text"].strip(), s["no_speech_prob"], s["avg_logprob"])
            for s in result["segments"]
        ]
    else:
        from subq.engine.asr.faster_whisper import load_ct2

        generator, _info = load_ct2("tiny.en", "cpu").model.transcribe(
            audio,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=list(options.temperature),
            word_timestamps=True,
            condition_on_previous_text=True,
            vad_filter=False,
        )
        rows = [
            (s.start, s.end, s.text.strip(), s.no_speech_prob, s.avg_logprob) for s in generator
        ]
    return [[float(a), float(b), t, float(n), float(lp)] for a, b, t, n, lp in rows]


if __name__ == "__main__":
    print(json.dumps(library_segments(sys.argv[1], sys.argv[2])))
