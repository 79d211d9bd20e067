"""Every key, grouped, read from the live bindings so a remapped key shows as remapped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from .main import GROUPS

NAV = [
    ("↑ ↓ pgup pgdn home end", "move the cursor in the job table"),
    ("← →", "scroll the table sideways (narrow terminals)"),
    ("tab / shift+tab", "move between panels and fields"),
    ("mouse", "click a row to select it, again to open it; wheel scrolls"),
]
PICKER = [
    ("type a path or glob", "e.g. ~/videos/**/*.mkv; tab completes, enter adds what matches"),
    ("space", "mark or unmark the file or folder under the cursor"),
    ("enter", "add the marked items (or the one under the cursor)"),
    ("→ / ←", "open / close a folder"),
    ("h, ctrl+h", "show all files, or media files only"),
    ("esc", "back without adding"),
]
ELSEWHERE = [
    ("details: o", "preview the next subtitle file"),
    ("settings: ctrl+s", "save (applies to jobs not started yet); esc: back"),
    ("unload: w / t / a", "whisper / translation / all"),
]


class HelpScreen(ModalScreen[None]):
    """The key reference; any of escape, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="help_close"),
    ]

    def __init__(
        self, keys: dict[str, tuple[list[str], str]], quit_dialog: tuple[str, str]
    ) -> None:
        """`keys` maps a binding id to (key displays, description), from the live bindings;
        `quit_dialog` is the line for the dialog this app's quit opens (it depends on
        whether the engine is in this process or a service), from that dialog's bindings."""
        super().__init__()
        self.keys = keys
        self.quit_dialog = quit_dialog

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = "subq keys (esc closes)"
            with Grid(id="help-grid"):
                for group, ids in GROUPS.items():
                    rows = [
                        (" ".join(self.keys[i][0]), self.keys[i][1]) for i in ids if i in self.keys
                    ]
                    yield _section(group, rows)
                yield _section("Moving around", NAV)
                yield _section("File picker (a)", PICKER)
                yield _section("Other screens", [*ELSEWHERE, self.quit_dialog])
        yield Footer()


def _section(title: str, rows: Iterable[tuple[str, str]]) -> Static:
    rows = list(rows)
    width = max((len(k) for k, _d in rows), default=0)
    text = Text()
    for i, (key, description) in enumerate(rows):
        text.append(key.ljust(width), style="bold")
        text.append(f"  {description}" + ("\n" if i < len(rows) - 1 else ""))
    section = Static(text, classes="help-section")
    section.border_title = title
    return section
