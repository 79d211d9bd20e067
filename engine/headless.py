"""What `subq run` and `subq demo` print: one line per step, a summary, JSON events.

The printer is an ordinary engine subscriber, like the TUI. On a terminal the running
stage's progress bar redraws in place; in a log file only whole lines are written. With
several workers (`--device cpu,cpu`), several jobs run at once: the progress line then
names each running job and its device, lines about a job name the job, and a worker's
death is one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import IO, Any

from .events import (
    Event,
    JobChanged,
    LogEmitted,
    MemorySampled,
    ModelLoaded,
    ModelUnloaded,
    StageProgressed,
    WorkerChanged,
)
from .findings import cleanup_summary, flag_list, flag_notes
from .jobs import Job, JobState
from .model_sizes import describe_unload, fmt_bytes
from .runner import Engine
from .settings import Settings


class ConsolePrinter:
    def __init__(self, out: IO[str] = sys.stdout, quiet: bool = False, local: bool = True):
        """`local`: the workers run on this machine, so its lack of a GPU is news (on a
        cluster's nodes, the GPUs are theirs)."""
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()
        self.to_process: set[int] = set()  # jobs this run queued (not already done)
        self.started = 0
        self._bar = False
        self._gpu_note: str | None = None
        self._noted_gpu = not local
        self._lock = threading.Lock()
        self._seen: set[int] = set()  # jobs that started in this run
        self._running: dict[int, str] = {}  # running job id -> name
        self._progress: dict[int, StageProgressed] = {}  # newest report per running job
        self._devices: dict[int, str] = {}  # running job id -> its worker's device entry
        self._workers: set[str] = set()  # device entries that had a worker
        self._several = False  # two workers or two jobs at once: lines name their job
        self._errors: set[str] = set()  # errors logged, so a failed job's is not said twice

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._handle(event)

    def _line(self, text: str, *, always: bool = False) -> None:
        if self.quiet and not always:
            return
        if self._bar:
            self.out.write("\r\033[K")
            self._bar = False
        self.out.write(text + "\n")
        self.out.flush()

    def _handle(self, event: Event) -> None:
        if isinstance(event, WorkerChanged):
            self._workers.add(event.device)
            self._several = self._several or len(self._workers) > 1
        match event:
            case JobChanged(job=job, previous=previous):
                self._job(job, previous)
            case StageProgressed(job_id=job_id, device=device):
                if device:
                    self._devices[job_id] = device
                if job_id in self._running:
                    self._progress[job_id] = event
                if self.tty and not self.quiet:
                    self._draw_progress()
            case WorkerChanged(state="busy", job_id=int(job_id), device=device):
                self._devices[job_id] = device
            case WorkerChanged(state="died", device=device, note=note):
                if device not in self._devices.values():  # on a job: the engine logs it
                    self._line(f"warning: {worker_note(device, note)}", always=True)
            case ModelLoaded(kind=kind, name=name, device=device, seconds=sec, bytes=size):
                self._line(
                    f"Loaded {kind} model {name} on {device} in {sec:.1f} s ({fmt_bytes(size)})"
                )
            case MemorySampled(gpu_note=note) if note and self._gpu_note is None:
                self._gpu_note = note  # said once, before the first job, if one runs
            case ModelUnloaded():
                self._line(describe_unload(event) + f" [{event.reason}]")
            case LogEmitted(level=level, message=message):
                if level == "error":
                    self._errors.add(message)
                if level in ("warning", "error"):
                    self._line(f"{level}: {message}", always=True)
                else:
                    self._line(f"  {message}")

    def _job(self, job: Job, previous: JobState | None) -> None:
        if previous is None:
            if job.state.runnable:
                self.to_process.add(job.id)
            return
        if job.state == JobState.RUNNING:
            self._running[job.id] = job.name
            self._several = self._several or len(self._running) > 1
        else:
            self._running.pop(job.id, None)
            self._progress.pop(job.id, None)
            self._devices.pop(job.id, None)
        who = f"  {job.name}: " if self._several else "  "
        if job.state == JobState.RUNNING and previous != JobState.RUNNING:
            if not self._noted_gpu and self._gpu_note and self._gpu_note.startswith("no GPU"):
                self._line(f"{self._gpu_note}; running on the CPU")
            self._noted_gpu = True
            device = self._devices.get(job.id)
            on = f" on {device}" if device and self._several else ""
            if job.id in self._seen:  # again (its worker died, its node could not read it)
                again = f"Resuming {job.name} at {job.resume_from:.1f} s"
                self._line((again if job.resume_from else f"Starting {job.name} again") + on)
                return
            self._seen.add(job.id)
            self.started += 1
            total = max(len(self.to_process), self.started)
            self._line(f"Processing ({self.started}/{total}): {job.name}{on}")
        elif job.state == JobState.DONE:
            times = dict(job.stage_times)
            parts = [f"{k} {v:.1f}s" for k, v in times.items() if k != "probe"]
            speed = ""
            if job.duration and times.get("transcribe"):
                speed = f", {job.duration / times['transcribe']:.1f}x realtime"
            lang = f", language {job.language}" if job.language else ""
            if job.language_probability is not None:
                lang += f" ({job.language_probability:.0%} sure)"
            self._line(f"{who}done in {sum(times.values()):.1f}s ({', '.join(parts)}{speed}){lang}")
            for out in job.outputs:
                self._line(f"  wrote {out}")
            if job.removed:
                self._line(f"{who}cleaned: {cleanup_summary(job.removed)}")
            for note in flag_notes(job.flags, job.measures):
                self._line(f"{who}check: {note}")
            for note in job.notes:
                self._line(f"{who}note: {note}")
        elif job.state == JobState.FAILED and job.error not in self._errors:
            self._line(f"error: {job.error}", always=True)
        elif job.state == JobState.SKIPPED:
            self._line(f"  skipped {job.name}: {job.error}")
        elif job.state in (JobState.PAUSED, JobState.INTERRUPTED, JobState.CANCELLED):
            where = f" at {job.resume_from:.1f} s" if job.resume_from else ""
            self._line(f"  {job.state.value}{where}: {job.name}", always=True)

    def _draw_progress(self) -> None:
        """The progress line, redrawn in place: the one running job's bar, or (several at
        once) each running job with its stage, percentage and device, cut to the terminal."""
        events = [self._progress[i] for i in self._running if i in self._progress]
        if not events:
            return
        if len(self._running) == 1 and not self._several:
            event = events[0]
            width = 24
            filled = int(event.fraction * width)
            speed = f" {event.speed:.1f}x" if event.speed else ""
            eta = f" ETA {event.eta:.0f}s" if event.eta is not None else ""
            text = (
                f"  {event.stage.value:<10} [{'#' * filled}"
                f"{'.' * (width - filled)}] {event.fraction:4.0%}{speed}{eta}"
            )
        else:
            parts = []
            for event in events:
                name = pad(self._running[event.job_id], 16).rstrip()
                device = self._devices.get(event.job_id)
                on = f" {device}" if device else ""
                parts.append(f"{name} {event.stage.value} {event.fraction:.0%}{on}")
            text = "  " + " | ".join(parts)
        room = shutil.get_terminal_size().columns - 1  # a wrapped line cannot be redrawn
        self.out.write("\r\033[K" + pad(text, room).rstrip())
        self.out.flush()
        self._bar = True


def worker_note(device: str, note: str) -> str:
    """A worker's note as a line of its own: "worker on cpu#2 died (signal 9)"."""
    if not note:
        return f"worker on {device} died"
    return note if device in note else f"worker on {device} {note}"


class EventWriter:
    """`--events FILE`: one JSON object per line, flushed, safe from several threads."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(event.to_json(), default=str)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def summary(jobs: list[Job]) -> str:
    """The table after a run; `flags` names what to check in a finished file (quality.py)."""
    rows = [("#", "file", "state", "lang", "flags", "time", "detail")]
    for i, job in enumerate(jobs, 1):
        total = sum(t for _k, t in job.stage_times)
        outputs = ", ".join(Path(o).name for o in job.outputs)
        detail = job.error or outputs or _standing(job)
        time_ = f"{total:.1f}s" if total else ""
        flags = flag_list(job.flags) if job.state == JobState.DONE else ""
        rows.append((str(i), job.name, job.state.value, job.language or "", flags, time_, detail))
    widths = [min(max(columns(r[c]) for r in rows), 40) for c in range(6)]
    lines = []
    for r in rows:
        cells = [pad(r[c], widths[c]) for c in range(6)]
        lines.append("  ".join([*cells, r[6]]).rstrip())
    return "\n".join(lines)


def _standing(job: Job) -> str:
    """Where an unfinished job stands: its stage and the share done, or where it resumes."""
    if job.state == JobState.RUNNING:
        return f"{job.stage.value if job.stage else 'starting'} {job.progress:.0%}"
    return f"resumes at {job.resume_from:.1f} s" if job.resume_from else ""


def columns(text: str) -> int:
    """Terminal columns `text` takes: wide (CJK) characters take two, combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def pad(text: str, width: int) -> str:
    """`text` cut to at most `width` columns, then padded with spaces to exactly `width`."""
    out, used = [], 0
    for ch in text:
        w = columns(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * (width - used)


def run_batch(
    paths: list[str],
    settings: Settings,
    *,
    state: Path | None,
    events: Path | None,
    quiet: bool = False,
    out: IO[str] = sys.stdout,
) -> int:
    """The whole of `subq run`: exit 0 when every job succeeded, 1 otherwise."""
    engine = Engine(settings, state, whole_queue=False)
    printer = ConsolePrinter(out, quiet, local=not settings.cluster)
    engine.subscribe(printer)
    writer = EventWriter(events) if events else None
    if writer:
        engine.subscribe(writer)
    stop = _SignalStop(engine, printer)
    stop.install()
    engine.start()
    engine.add(paths)
    try:
        while not engine.wait_idle(0.2):
            pass
        engine.shutdown()
    finally:
        stop.restore()
    jobs = engine.jobs()
    if not quiet or any(j.state == JobState.FAILED for j in jobs):
        out.write("\n" + summary(jobs) + "\n")
    if writer:
        writer.close()
    engine.store.close()
    if stop.count:
        return 130
    if engine.fatal:
        return 1
    bad = (JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED, JobState.PAUSED)
    return 1 if any(j.state in bad for j in jobs) else 0


class _SignalStop:
    """First Ctrl-C: stop at the next window, keeping the checkpoint. Second: stop now.
    SIGTERM/SIGHUP (SSH dropped): the same, forced after 1.5 s, so exit is within 2 s."""

    def __init__(self, engine: Engine, printer: ConsolePrinter) -> None:
        self.engine = engine
        self.printer = printer
        self.count = 0
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, self._handle)
        self._old[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self._suspend)

    def _suspend(self, _signum: int, _frame: Any) -> None:
        """Ctrl-Z: stop between two state-file transactions, never inside one (a stopped
        holder of SQLite's write lock would block every other process on the queue)."""
        with self.engine.store.between_transactions():
            os.kill(os.getpid(), signal.SIGSTOP)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, _frame: Any) -> None:
        self.count += 1
        if signum == signal.SIGINT and self.count == 1:
            self.printer._line(
                "Stopping at the next window; press Ctrl-C again to stop now", always=True
            )
            threading.Thread(target=self.engine.shutdown, daemon=True).start()
            return
        hard_exit(
            self.engine,
            130 if signum == signal.SIGINT else 128 + signum,
            grace=0 if signum == signal.SIGINT else 1.5,
        )


def hard_exit(engine: Engine, code: int, grace: float) -> None:
    """Try a clean stop for `grace` seconds, then commit, remove temp files and exit."""
    if grace:
        done = threading.Thread(target=engine.shutdown, kwargs={"timeout": grace}, daemon=True)
        done.start()
        done.join(grace)
    engine.emergency_stop()
    sys.stdout.flush()
    os._exit(code)


def run_demo(settings: Settings, out: IO[str] = sys.stdout) -> int:
    """Transcribe the clip shipped inside the package and print the SRT, with timings."""
    import importlib.resources
    import shutil
    import tempfile

    started = time.perf_counter()
    data = importlib.resources.files("subq.engine.data")
    with tempfile.TemporaryDirectory(prefix="subq-demo-") as tmp:
        clip = Path(tmp) / "demo.mp3"
        with importlib.resources.as_file(data / "demo.mp3") as src:
            shutil.copy(src, clip)
        reference = (data / "demo.txt").read_text(encoding="utf-8").strip()
        out.write(f"subq demo: transcribing the bundled clip {clip.name} with {settings.model}\n")
        code = run_batch(
            [str(clip)], settings, state=Path(tmp) / "state.sqlite3", events=None, out=out
        )
        srt = clip.with_suffix(".srt")
        if srt.exists():
            out.write(f"\n--- {srt.name} ---\n{srt.read_text(encoding='utf-8')}")
            out.write(f"--- reference ---\n{reference}\n")
        out.write(f"\ndemo finished in {time.perf_counter() - started:.1f} s\n")
    return code
