"""The log strip: the engine's log lines, newest at the bottom, level always written out.

Messages are plain text (file names may contain "[", so markup is off); the level word is
coloured with the theme's text colours but is also spelled, so nothing relies on colour.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from .formatting import clock_time, theme_style

LEVELS = {"warning": ("warn ", "text-warning"), "error": ("error", "text-error")}


class LogStrip(RichLog):
    """A bounded log; the full history of one job is on its details screen."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            max_lines=2000,
            wrap=True,
            min_width=20,
            markup=False,
            highlight=False,
            auto_scroll=True,
            **kwargs,
        )  # type: ignore[arg-type]

    def add(self, level: str, message: str, at: float, job: str | None = None) -> None:
        """One line: time, the level spelled out (warn/error), the message as plain text."""
        word, colour = LEVELS.get(level, ("", ""))
        line = Text(clock_time(at) + " ", style="dim")
        if word:
            line.append(word + " ", theme_style(self.app.theme_variables, colour, bold=True))
        if job:
            line.append(f"{job}: ")
        line.append(message)
        self.write(line)
