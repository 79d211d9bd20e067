"""One worker alone: pick its row, then pause, resume or release it (`w` on the main screen).

The other workers go on. A paused worker's running job goes back to the queue with its
checkpoint and runs on another worker, or waits; released, the worker also ends, so its
device's memory goes back. The rows are the memory panel's, as the engine last said them.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

Order = tuple[str, str]  # (worker entry, "pause" | "resume" | "release")


class WorkersScreen(ModalScreen[Order | None]):
    """The workers as a list; p pauses or resumes the highlighted one, R releases it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "order('pause')", "Pause/resume", id="worker_pause"),
        Binding("R", "order('release')", "Release", id="worker_release"),
        Binding("escape", "dismiss(None)", "Back", id="worker_back"),
    ]

    def __init__(self, workers: list[tuple[str, str]]) -> None:
        super().__init__()
        self.rows = workers  # (entry, state) as the memory panel shows them

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "One worker"
            yield Label(
                "p pauses or resumes the highlighted worker (its job goes on elsewhere or "
                "waits), R releases it (its process ends); the others go on. esc: back",
                classes="dialog-text",
            )
            yield OptionList(
                *(Option(Text(f"{entry}  {state}"), id=entry) for entry, state in self.rows),
                id="workers-list",
                compact=True,
            )

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0

    def action_order(self, order: str) -> None:
        chosen = self.query_one(OptionList).highlighted
        if chosen is None:
            return
        entry, state = self.rows[chosen]
        if order == "pause" and state in ("paused", "stopped"):  # (stopped: released)
            order = "resume"
        self.dismiss((entry, order))
