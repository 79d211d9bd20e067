"""Figure 12, what checkpoints write to the state file as a file gets longer (issue 22).

A transcription stores a checkpoint at every 30 s window. Each is replayed here through
the real `Store.set_checkpoint` of a given subq tree, in a fresh process on a fresh state
file: the checkpoints a run of N minutes stores, built from reading.mp3's real segments
(its transcript, repeated to length) with a full 223-token prompt. Reported: the bytes
the process wrote (`/proc/self/io` wchar: every write(2) to the database and its WAL), in
all and per audio minute.

    python benchmarks/bench_state_growth.py                  # this tree, 10/30/120 minutes
    python benchmarks/bench_state_growth.py --tree DIR       # another tree (git archive)

To measure another commit: `git archive REV engine | tar -x -C DIR/subq` (with an empty
DIR/subq/__init__.py) and pass `--tree DIR`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import common as c

MINUTES = (10, 30, 120)

CHILD = r"""
import json, sys
from pathlib import Path
from subq.engine.settings import Settings
from subq.engine.store import Store
minutes, state, segments_file = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
base = json.loads(Path(segments_file).read_text())
period = base[-1][1] + 1.0
store = Store(state)
job = store.add_job(str(state.with_suffix(".mp3")), Settings())
def io():  # bytes this process handed to write(2): the database, its WAL and journal
    lines = Path("/proc/self/io").read_text().splitlines()
    return int(dict(line.split(": ") for line in lines)["wchar"])
before, done = io(), []
for window in range(minutes * 2):
    end = window * 30.0
    laps = int(end // period) + 1
    done = [[a + k * period, b + k * period, t, n, p] for k in range(laps) for a, b, t, n, p in base
            if b + k * period <= end]
    store.set_checkpoint(job.id, "key", {"format": 2, "seek": end, "frame": window * 3000,
                                         "prompt": list(range(50000, 50223)), "language": "en",
                                         "last_speech_timestamp": end, "segments": done})
store.close()
print(json.dumps({"written": io() - before, "segments": len(done)}))
"""


def segments_of_reading(tmp: Path) -> Path:
    """reading.mp3's segments, transcribed once here by subq's default loop."""
    from subq.engine import asr, media
    from subq.engine.asr.faster_whisper import load_ct2, transcribe_ct2

    result = transcribe_ct2(
        load_ct2("tiny.en", "cpu"),
        media.open_audio(c.DATA / "reading.mp3"),
        asr.TranscribeOptions(language="en"),
    )
    path = tmp / "segments.json"
    path.write_text(json.dumps([s.to_json() for s in result.segments]))
    return path


def main() -> int:
    parser = c.base_parser(__doc__)
    parser.add_argument("--tree", type=Path, help="a subq tree to measure instead of this one")
    parser.add_argument("--segments", type=Path, help="segments JSON (default: transcribe)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="subq-bench-state-"))
    env = c.isolate(tmp)
    if args.tree:
        env["PYTHONPATH"] = str(args.tree)
    segments = args.segments or segments_of_reading(tmp)
    rows = []
    for minutes in MINUTES:
        state = tmp / f"state-{minutes}.db"
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(minutes), str(state), str(segments)],
            capture_output=True, text=True, env=env, check=True, cwd=tmp,
        ).stdout  # fmt: skip
        measured = json.loads(out.strip().splitlines()[-1])
        rows.append({"minutes": minutes, **measured})
    table = c.table(
        ("audio", "checkpoints", "segments at the end", "bytes written", "per audio minute"),
        [
            (f"{r['minutes']} min", r["minutes"] * 2, r["segments"],
             f"{r['written'] / 2**20:.1f} MiB", f"{r['written'] / r['minutes'] / 1024:.0f} KiB")
            for r in rows
        ],
    )  # fmt: skip
    tree = f" (tree {args.tree})" if args.tree else ""
    markdown = f"Reproduce: `python benchmarks/bench_state_growth.py`{tree}.\n\n{table}"
    return c.finish(args, {"markdown": markdown, "rows": rows})


if __name__ == "__main__":
    sys.exit(main())
