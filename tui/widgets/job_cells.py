"""What each cell of a job row says, and how wide each column is.

Pure functions of a job snapshot, apart from the table widget (job_table.py), which only
decides when to draw. When all the columns would leave the last one under OUTPUT_MIN (about
110 columns; 80x24 over SSH) the duration and speed columns fold away and progress is a
number without its bar, so the last column keeps room for the reason a job failed: that is
what a person at a small terminal needs to read; the rest is on the details screen (enter).
A running job has no outputs yet, so that same last column names the device running it
("on cuda:1"), at every width and with one device too (it costs no room there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.style import Style
from rich.text import Text
from subq.engine import Job, JobState, Stage, StageProgressed, flag_words

from .formatting import bar, short_duration, theme_style

# key, label, width (None: takes what is left), right-aligned. Cells carry their own one
# space of separation (cell_padding=0): 2 spaces per column would not fit 80 columns.
COLUMNS: tuple[tuple[str, str, int | None, bool], ...] = (
    ("id", "#", 3, True),
    ("file", "file", 16, False),
    ("dur", "dur", 5, True),
    ("lang", "lang", 4, False),
    ("state", "state", 11, False),
    ("flags", "flags", 8, False),
    ("stage", "stage", 10, False),
    ("progress", "progress", 10, False),
    ("speed", "speed", 5, True),
    ("time", "time/ETA", 9, False),
    ("output", "output", None, False),
)
BAR_WIDTH = 5
# the least needed at a glance (all on the details screen); a finished job's flags move to
# the front of its output cell
FOLDED = ("dur", "lang", "flags", "speed")
LANG_FROM = 140  # columns from which the language and the flags have columns of their own
DOUBTFUL = 0.5  # a detected language the model gave less than this is shown with "?"
NARROW_PROGRESS = 4  # " 45%": the bar goes, the number stays
OUTPUT_MIN = 24  # the output/reason column's least room ("no audio stream (nothin…")
STATE_COLOURS = {
    JobState.RUNNING: "text-primary",
    JobState.PAUSED: "text-warning",
    JobState.INTERRUPTED: "text-warning",
    JobState.DONE: "text-success",
    JobState.FAILED: "text-error",
    JobState.CANCELLED: "text-secondary",
    JobState.SKIPPED: "text-secondary",
}


@dataclass
class RowState:
    """What the table knows about a job beyond the cells: for ordering and staleness."""

    job: Job
    changed_at: float = 0.0  # the engine's time of the snapshot shown (older ones are dropped)
    started_at: float | None = None  # UI clock when it started running
    progress: StageProgressed | None = None  # newest report for the current stage
    progress_at: float = 0.0  # UI clock when that report arrived
    mark: str | None = None  # an order sent but not yet applied ("cancelling…")
    device: str | None = None  # the worker's device entry running it ("cuda:1", "cpu#2")
    worker_note: str = ""  # what happened to its worker ("worker on cpu died …; resumed")


def cells(
    row: RowState,
    now: float,
    palette: dict[str, str],
    narrow: bool,
    probed: float | None,
    flags_folded: bool = True,
) -> list[Text]:
    """The row's cells in COLUMNS order; `probed`: a duration the UI read before a run;
    `flags_folded`: the flags column is hidden, so a finished job's flags lead its output."""
    job, event = row.job, row.progress
    style = theme_style(
        palette, STATE_COLOURS.get(job.state, ""), bold=job.state == JobState.RUNNING
    )
    stage = job.stage.value if job.stage else ""
    if job.state == JobState.RUNNING and job.stage == Stage.WAITING:
        stage = "wait mem"
    stage_text = Text(row.mark, style="italic") if row.mark else Text(stage)
    fraction = event.fraction if event and job.state != JobState.DONE else job.fraction_done
    progress = Text("")
    if narrow and (job.state in (JobState.RUNNING, JobState.DONE) or fraction > 0):
        progress = Text(f"{fraction * 100:3.0f}%")
    elif job.state in (JobState.RUNNING, JobState.DONE) or fraction > 0:
        progress = Text.assemble(
            (bar(fraction, BAR_WIDTH), theme_style(palette, "text-primary")),
            f"{fraction * 100:4.0f}%",
        )
    duration = job.duration if job.duration is not None else probed
    return [
        Text(str(job.id), justify="right"),
        pad(Text(job.name, no_wrap=True, overflow="ellipsis")),
        Text(short_duration(duration), justify="right"),
        pad(Text(language(job))),
        pad(Text(job.state.value, style=style)),
        pad(Text(flag_cell(job), style=theme_style(palette, "text-warning"))),
        pad(stage_text),
        pad(progress),
        Text(speed(job, event), justify="right"),
        pad(Text(time_text(row, now), no_wrap=True, overflow="ellipsis")),
        pad(output(job, theme_style(palette, "text-error"), row, flags_folded, palette)),
    ]


def flag_cell(job: Job) -> str:
    """A finished job's quality flags, the first one's word and "+N" for more ("loops+1");
    all of them, with the values behind them, are on the details screen."""
    return flag_words(job.flags) if job.state == JobState.DONE else ""


def language(job: Job) -> str:
    """The language spoken; "hu?" where the model was less than half sure of it."""
    if not job.language:
        return ""
    p = job.language_probability
    return f"{job.language}?" if p is not None and p < DOUBTFUL else job.language


def widths(width: int, narrow: bool) -> dict[str, int]:
    """Each fixed column's width (with its separator space) for a table `width` wide.

    Wide: the file name gets half of what is left (20 to 48), and the output column (not
    in the dict: as wide as its text) the rest; it may run off the right edge (left/right
    scroll). Narrow: FOLDED columns are 0 wide, the file name gives way until the output
    column has OUTPUT_MIN, and the output column is fixed to what is left.
    """
    out: dict[str, int] = {}
    for n, (key, _label, fixed, _right) in enumerate(COLUMNS):
        if fixed is not None and key != "file":
            size = NARROW_PROGRESS if narrow and key == "progress" else fixed
            out[key] = 0 if narrow and key in FOLDED else size + (n > 0)
    if width < LANG_FROM:  # where there is room: at 120 the reason needs it more
        out["lang"] = out["flags"] = 0
    rest = width - sum(out.values()) - 1  # 1: the output column's separator
    if narrow:  # a fixed output width, so a long reason ends in "…" at the edge
        out["file"] = max(12, min(24, rest - OUTPUT_MIN)) + 1
        out["output"] = max(OUTPUT_MIN, rest - out["file"]) + 1
    else:
        out["file"] = min(48, max(20, rest // 2))
    return out


def pad(text: Text, lead: bool = True) -> Text:
    """One leading space: the column separator (the table's own padding is 0)."""
    return Text.assemble(" ", text, no_wrap=True, overflow="ellipsis") if lead else text


def speed(job: Job, event: StageProgressed | None) -> str:
    """Seconds of audio per second: from the running stage, or transcription of a done job."""
    rate = event.speed if event else None
    if rate is None and job.state == JobState.DONE and job.duration:
        spent = dict(job.stage_times).get("transcribe")
        rate = job.duration / spent if spent else None
    if not rate:
        return ""
    return f"{rate:.0f}x" if rate >= 100 else f"{rate:.1f}x"


def time_text(row: RowState, now: float) -> str:
    """Running: time since it started / the stage's ETA, counted down between reports."""
    job, event = row.job, row.progress
    if job.state == JobState.RUNNING:
        elapsed = short_duration(max(0.0, now - row.started_at)) if row.started_at else ""
        if event is not None and event.eta is not None:
            return f"{elapsed}/{short_duration(max(0.0, event.eta - (now - row.progress_at)))}"
        return elapsed
    if not job.state.finished:
        return ""
    spent = sum(t for _k, t in job.stage_times)
    return short_duration(spent) if spent else ""


def output(
    job: Job,
    error_style: Style,
    row: RowState | None = None,
    flags_first: bool = False,
    palette: dict[str, str] | None = None,
) -> Text:
    """Outputs, or why there are none: the error without the file's path in front (the row
    already names the file, and a long path would leave no room for the reason).

    A running job has no outputs yet: its cell names the device running it ("on cuda:1"),
    so the table needs no extra column at 80 columns; a worker that died on it says so.
    Where the flags have no column (`flags_first`), a finished job's lead its outputs
    ("loops+1 · talk.srt").
    """
    text = _output(job, error_style, row)
    if flags_first and (flags := flag_cell(job)):
        lead = Text(flags, style=theme_style(palette or {}, "text-warning"))
        return Text.assemble(lead, " · ", text, no_wrap=True, overflow="ellipsis")
    return text


def _output(job: Job, error_style: Style, row: RowState | None) -> Text:
    error = reason(job)
    note = row.worker_note if row else ""
    if job.state == JobState.RUNNING and row is not None and (row.device or note):
        text = Text(f"on {row.device}" if row.device else "", no_wrap=True, overflow="ellipsis")
        if note:
            text.append(" · " if row.device else "").append(note, style="italic")
        return text
    if job.state == JobState.FAILED and error:
        return Text(error, style=error_style, no_wrap=True, overflow="ellipsis")
    if job.state == JobState.SKIPPED and error:
        return Text("skipped: " + error, no_wrap=True, overflow="ellipsis")
    if job.outputs:
        text = Text(", ".join(Path(o).name for o in job.outputs), no_wrap=True, overflow="ellipsis")
        if error and job.state.finished:  # finished with outputs and an error: show both
            text.append(" · ").append(error, style=error_style)
        elif note:
            text.append(" · ").append(note, style="italic")
        return text
    if note:  # back in the queue after its worker died
        return Text(note, style="italic", no_wrap=True, overflow="ellipsis")
    if job.resume_from:
        return Text(f"resumes at {short_duration(job.resume_from)}")
    return Text("")


def reason(job: Job) -> str:
    """The job's error, less a leading "<path>: " (media errors start with the path)."""
    error = job.error or ""
    for prefix in (job.path, str(Path(job.path)), job.name):
        if prefix and error.startswith(prefix + ": "):
            return error[len(prefix) + 2 :]
    return error
