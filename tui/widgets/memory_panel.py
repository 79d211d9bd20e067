"""The memory panel: what each GPU holds and who else is on it, or RAM when there is no GPU.

Below the memory, a row per worker process (device, state, models, memory, last note;
workers.py), once the engine reports any.

Like nvitop's panels it only renders the newest sample it was handed (the sampler thread
takes them); a field the driver could not read shows as "n/a". The panel keeps its own
history per series (GPU used memory, or process RSS without a GPU) for the sparkline.
`compact` (set by the screen on narrow terminals) folds each GPU into one line.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from rich.text import Text
from subq.engine import (
    CONTEXT_NOTE,
    GpuSample,
    LoadedModel,
    MemorySampled,
    ModelLoaded,
    ModelUnloaded,
    WorkerChanged,
)
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Sparkline, Static

from .formatting import bar, fmt_bytes, mem_pair, short_duration
from .workers import WorkerRow, updated, worker_lines

HISTORY = 1200  # samples: ten minutes at the engine's 0.5 s interval


class Series(Vertical):
    """One GPU (or the RAM view): a text block and its history sparkline."""

    DEFAULT_CSS = "Series { height: auto; }"

    def __init__(self) -> None:
        super().__init__()
        self.text = Static(classes="series-text")
        self.spark = Sparkline([], classes="series-spark")

    def compose(self) -> ComposeResult:
        yield self.text
        yield self.spark


class MemoryPanel(Vertical):
    """GPU memory per card, torch's view, models and their footprints, other processes."""

    compact: reactive[bool] = reactive(False)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.latest: MemorySampled | None = None
        self.models: dict[tuple[str, str, str], LoadedModel] = {}
        self.history: dict[str, deque[tuple[float, float]]] = {}
        # Held, not queried: samples may still arrive while the app tears down.
        self.note = Static("waiting for the first memory sample…", id="memory-note")
        self.series = Vertical(id="memory-series")
        self.models_text = Static(id="memory-models")
        self.worker_rows: dict[str, WorkerRow] = {}
        self.workers_text = Static(id="memory-workers")
        self.workers_text.display = False  # until a worker is reported
        self.blocks: list[Series] = []

    def compose(self) -> ComposeResult:
        yield self.note
        yield self.series
        yield self.workers_text
        yield self.models_text

    # -- inputs ---------------------------------------------------------------------
    def set_models(self, loaded: Iterable[LoadedModel]) -> None:
        """The models loaded when the app starts (events keep it current after that)."""
        self.models = {(m.kind, m.name, m.device): m for m in loaded}
        self._render_models()

    def model_event(self, event: ModelLoaded | ModelUnloaded) -> None:
        """A model came or went: list it with its footprint, or drop it."""
        key = (event.kind, event.name, event.device)
        if isinstance(event, ModelLoaded):
            self.models[key] = LoadedModel(event.kind, event.name, event.device, event.bytes)
        else:
            self.models.pop(key, None)
        self._render_models()

    def keep_models(self, names: tuple[str, ...]) -> None:
        """Drop models the engine no longer reports (names are "kind:name")."""
        gone = [k for k, m in self.models.items() if f"{m.kind}:{m.name}" not in names]
        for key in gone:
            del self.models[key]
        if gone:
            self._render_models()

    def worker(self, event: WorkerChanged) -> None:
        """A worker process started, changed, ended or died: its row says so."""
        updated(self.worker_rows, event)
        self._render_workers()

    def names(self) -> list[str]:
        """The loaded models as the header lists them ("kind:name"), each once: a model
        loaded in two workers reads "kind:name ×2" (the panel's rows say where)."""
        counts = Counter(f"{m.kind}:{m.name}" for m in self.models.values())
        return [name if n == 1 else f"{name} ×{n}" for name, n in counts.items()]

    @property
    def on_gpu(self) -> bool:
        """The newest sample saw a GPU (so a CUDA context stays after Release GPU)."""
        return bool(self.latest and self.latest.gpus)

    def samples(self, samples: list[MemorySampled]) -> None:
        """New samples since the last flush: extend the history, draw the newest."""
        if not samples:
            return
        for sample in samples:
            for key, value in _series_values(sample):
                self.history.setdefault(key, deque(maxlen=HISTORY)).append((sample.at, value))
        self.latest = samples[-1]
        self._render_sample()

    def watch_compact(self, compact: bool) -> None:
        self.set_class(compact, "-compact")
        self._render_sample()
        self._render_models()
        self._render_workers()

    # -- rendering ------------------------------------------------------------------
    def _render_sample(self) -> None:
        sample = self.latest
        if sample is None or not self.is_mounted:
            return
        keys = [key for key, _v in _series_values(sample)]
        blocks = self.blocks
        if len(blocks) != len(keys):  # the first sample, or a GPU came or went
            self.series.remove_children()
            self.blocks = blocks = [Series() for _ in keys]
            self.series.mount_all(blocks)
        note = sample.gpu_note or ""
        self.note.update(Text("note: " + note if sample.gpus else note, style="italic"))
        self.note.display = bool(note) and not self.compact
        self.border_title = "memory · " + _short_note(note) if self.compact and note else "memory"
        for key, block in zip(keys, blocks, strict=True):
            history = self.history.get(key, deque())
            span = history[-1][0] - history[0][0] if len(history) > 1 else 0.0
            gpu = next((g for g in sample.gpus if f"gpu{g.index}" == key), None)
            text = (
                _gpu_text(gpu, span, self.compact) if gpu else _ram_text(sample, span, self.compact)
            )
            block.text.update(text)
            block.spark.data = [v for _t, v in history]

    def _render_workers(self) -> None:
        if not self.is_mounted or not self.worker_rows:
            return
        self.workers_text.display = True
        sizes = {(m.device, f"{m.kind}:{m.name}"): m.bytes for m in self.models.values()}
        self.workers_text.update(worker_lines(self.worker_rows, self.compact, sizes))
        # Every model lives in a worker: their rows list them, so the list goes.
        self.models_text.display = False

    def _render_models(self) -> None:
        if not self.is_mounted:
            return
        if not self.models:
            line = "models: none loaded"
        elif self.compact:
            line = "models: " + " · ".join(
                f"{m.kind} {m.name} {fmt_bytes(m.bytes)}" for m in self.models.values()
            )
        else:
            line = "models:\n" + "\n".join(
                f" {m.kind} {m.name} {fmt_bytes(m.bytes)} ({m.device})"
                for m in self.models.values()
            )
        self.models_text.update(Text(line))
        self._render_workers()  # their rows show the footprints


def _short_note(note: str) -> str:
    if note == CONTEXT_NOTE:
        return "Release GPU ends the workers, CUDA contexts included"
    return note


def _series_values(sample: MemorySampled) -> list[tuple[str, float]]:
    if sample.gpus:
        return [(f"gpu{g.index}", float(g.used or 0)) for g in sample.gpus]
    return [("rss", float(sample.rss_bytes))]


def _history_label(span: float) -> str:
    return f"history {short_duration(span)}" if span >= 1 else "history"


def _gpu_text(gpu: GpuSample, span: float, compact: bool) -> Text:
    fraction = (gpu.used or 0) / gpu.total if gpu.total else 0.0
    used = f"{bar(fraction, 8)} {mem_pair(gpu.used, gpu.total)}"
    torch = (
        f"torch {fmt_bytes(gpu.torch_allocated)} alloc / {fmt_bytes(gpu.torch_reserved)} reserved"
    )
    ooms = f"OOM {gpu.ooms if gpu.ooms is not None else 'n/a'}"
    others = [f"{p.pid} {p.name} {fmt_bytes(p.bytes)}" for p in gpu.processes]
    if compact:
        parts = [f"GPU{gpu.index} {used}", torch.replace(" reserved", ""), ooms]
        if others:
            parts.append(f"{len(others)} other process{'es' if len(others) > 1 else ''}")
        return Text(" · ".join(parts) + " · ", no_wrap=True, overflow="ellipsis")
    util = f" · util {gpu.utilization}%" if gpu.utilization is not None else ""
    lines = [
        f"GPU {gpu.index} {gpu.name}{util}",
        f" used   {used}",
        f" subq   {fmt_bytes(gpu.this_process)} on this card",
        f" {torch}",
        f" {ooms}",
        " others " + ("; ".join(others) if others else "none"),
        f" {_history_label(span)} (used):",
    ]
    return Text("\n".join(lines))


def _ram_text(sample: MemorySampled, span: float, compact: bool) -> Text:
    used = sample.ram_total - sample.ram_available
    fraction = used / sample.ram_total if sample.ram_total else 0.0
    ram = f"{bar(fraction, 8)} {mem_pair(used, sample.ram_total)}"
    if compact:
        return Text(
            f"subq RSS {fmt_bytes(sample.rss_bytes)} · RAM {ram} · RSS ",
            no_wrap=True,
            overflow="ellipsis",
        )
    return Text(
        "\n".join(
            [
                f" subq RSS {fmt_bytes(sample.rss_bytes)}",
                f" RAM used {ram}",
                f" {_history_label(span)} (RSS):",
            ]
        )
    )
