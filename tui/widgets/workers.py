"""The memory panel's worker rows: one per device entry, as its WorkerChanged events say.

Models live in worker processes (one per device entry: "cuda:0", "cpu#2"); each row says
what the worker is doing, which models it holds, its memory, and the last thing that
happened to it. A stopped worker keeps its row, saying it is gone and what came back
("cpu: no worker (released: 480 MB back)"), so Release visibly gave the memory back.
Pure text, no Textual: the panel draws it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rich.text import Text
from subq.engine import WorkerChanged

from .formatting import fmt_bytes


@dataclass(frozen=True)
class WorkerRow:
    """The newest event of one worker, and the last note any of its events carried."""

    event: WorkerChanged
    note: str = ""


def updated(rows: dict[str, WorkerRow], event: WorkerChanged) -> None:
    """Record `event` in `rows` (keyed by device); an event without a note keeps the last
    note, unless it was a stopped worker's: a new worker then starts without it
    ("unloaded its last model" stayed on a worker that had loaded a model again). A death's
    note stays on the worker that replaced it: it says why that worker is new."""
    old = rows.get(event.device)
    if old is not None and event.at < old.event.at:
        return  # an older report than the one shown
    keep = old is not None and not (old.event.state == "stopped" and event.state != "stopped")
    rows[event.device] = WorkerRow(event, event.note or (old.note if keep and old else ""))


def worker_note(device: str, note: str) -> str:
    """A worker's note as a line of its own: "worker on cpu#2 died (signal 9)"."""
    if not note:
        return f"worker on {device} died"
    return note if device in note else f"worker on {device} {note}"


def memory_text(event: WorkerChanged) -> str:
    """ "480 MB" on the CPU; "RSS 480 MB · GPU 1.2 GB" on a GPU (n/a where NVML can't tell)."""
    rss = fmt_bytes(event.rss_bytes)
    if event.gpu_bytes is None and not event.device.startswith("cuda"):
        return rss
    return f"RSS {rss} · GPU {fmt_bytes(event.gpu_bytes)}"


def state_text(event: WorkerChanged) -> str:
    if event.state == "busy" and event.job_id is not None:
        return f"busy #{event.job_id}"
    return event.state


def model_text(model: str, size: int | None) -> str:
    """ "whisper tiny.en 80 MB" from the worker's "whisper:tiny.en" and its footprint."""
    text = model.replace(":", " ", 1)
    return f"{text} {fmt_bytes(size)}" if size else text


def worker_lines(
    rows: dict[str, WorkerRow], compact: bool, sizes: Mapping[tuple[str, str], int] | None = None
) -> Text:
    """Every worker, sorted by device. Wide: the device, state and memory on one line, its
    models (with their footprints from `sizes`, keyed by device and "kind:name") and last
    note under it. Compact: one line each, cut at the edge."""
    sizes = sizes or {}
    lines: list[Text] = [] if compact else [Text("workers:")]
    lead = "" if compact else " "
    for device in sorted(rows):
        row = rows[device]
        event = row.event
        if event.state == "stopped":
            gone = f"{device}: no worker" + (f" ({row.note})" if row.note else "")
            lines.append(Text(lead + gone, style="dim"))
            continue
        style = "bold" if event.state == "died" else ""
        parts = [state_text(event), memory_text(event)]
        models = ", ".join(model_text(m, sizes.get((device, m))) for m in event.models)
        if models and compact:
            parts.append(models)
        line = Text.assemble(lead, (f"{device} ", "bold"), (" · ".join(parts), style))
        if models and not compact:  # its own line: a side panel is ~42 columns wide
            line.append(f"\n   {models}")
        if row.note:
            line.append(" · " if compact else "\n   ").append(row.note, style="italic")
        lines.append(line)
    text = Text("\n").join(lines)
    text.no_wrap, text.overflow = compact, "ellipsis"
    return text
