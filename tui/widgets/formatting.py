"""Small text formatters shared by the widgets: durations, bars, paths.

Everything here returns short, fixed-width-friendly strings, because the job table must fit
an 80-column terminal; nothing here touches Textual, so it is trivially testable.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.style import Style
from subq.engine import fmt_bytes

__all__ = [
    "bar",
    "clock_time",
    "display_path",
    "fmt_bytes",
    "mem_pair",
    "short_duration",
    "theme_style",
]

_EIGHTHS = " ▏▎▍▌▋▊▉"


def short_duration(seconds: float | None) -> str:
    """At most 5 characters: 0:07, 12:34, 1h02m, 27h, so columns never jump in width."""
    if seconds is None or seconds < 0:
        return ""
    s = round(seconds)
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    hours, minutes = divmod(s // 60, 60)
    return f"{hours}h{minutes:02d}m" if hours < 10 else f"{hours}h"


def bar(fraction: float, width: int) -> str:
    """A text bar with eighth-block precision; the caller adds a percentage next to it."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[part] if part else "")
    return text + "░" * (width - len(text))


def display_path(path: str | Path, *, relative: bool = True) -> str:
    """A path as a person would type it: relative under the working folder, else ~/..."""
    path = Path(path)
    if relative:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            pass
    home = os.path.expanduser("~")
    text = str(path)
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home) :]
    return text


def clock_time(at: float) -> str:
    """HH:MM:SS in local time, for log lines."""
    import time

    return time.strftime("%H:%M:%S", time.localtime(at))


def mem_pair(used: int | None, total: int | None) -> str:
    """ "12.3/79.6 GB": both numbers in the total's unit, so the pair reads at a glance."""
    if used is None or total is None:
        return f"{fmt_bytes(used)}/{fmt_bytes(total)}"
    unit, div = "GB", 1024**3
    if total < 1024**3:
        unit, div = "MB", 1024**2
    return f"{used / div:.1f}/{total / div:.1f} {unit}"


def theme_style(variables: dict[str, str], name: str, *, bold: bool = False) -> Style:
    """A Rich style from a theme variable ("text-success"), readable in dark and light themes.

    Cells of a DataTable and lines of a RichLog are Rich text, which CSS cannot reach; the
    theme's own `text-*` colours keep them legible whatever theme is active.
    """
    from textual.color import Color

    value = variables.get(name)
    try:
        colour = Color.parse(value).rich_color if value else None
    except Exception:
        colour = None
    return Style(color=colour, bold=bold or None)
