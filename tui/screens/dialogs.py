"""Small modal questions: which model to unload, and whether to quit with work in progress.

Each answers with one key (or a button, for the mouse) and escape always backs out.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class UnloadScreen(ModalScreen[str | None]):
    """Unload whisper, translation or all; applied now, or at the end of the running stage."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "choose('whisper')", "Whisper", id="unload_whisper"),
        Binding("t", "choose('translation')", "Translation", id="unload_translation"),
        Binding("a", "choose('all')", "All", id="unload_all"),
        Binding("escape", "dismiss(None)", "Back", id="unload_back"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Unload a model"
            yield Label(
                "Frees its memory now, or at the end of the running stage; it loads "
                "again when a job needs it.",
                classes="dialog-text",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("[u]w[/u]hisper", id="whisper", compact=True)
                yield Button("[u]t[/u]ranslation", id="translation", compact=True)
                yield Button("[u]a[/u]ll", id="all", variant="primary", compact=True)
                yield Button("back", id="back", compact=True)

    def action_choose(self, kind: str) -> None:
        self.dismiss(kind)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "back" else event.button.id)


class QuitScreen(ModalScreen[bool]):
    """Work is in progress: pause and quit (the queue is kept), or stay."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p,enter", "answer(True)", "Pause and quit", id="quit_pause"),
        Binding("c,escape", "answer(False)", "Cancel", id="quit_cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Quit subq?"
            yield Label(
                "A job is running or waiting. Quitting pauses the batch: the running "
                "job keeps its checkpoint and the queue is there when you reopen subq.",
                classes="dialog-text",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    "[u]P[/u]ause and quit (queue kept)",
                    id="pause",
                    variant="primary",
                    compact=True,
                )
                yield Button("[u]C[/u]ancel", id="cancel", compact=True)

    def action_answer(self, quit_: bool) -> None:
        self.dismiss(quit_)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "pause")


class DetachScreen(ModalScreen[str | None]):
    """The engine runs as its own process: leave the batch running (the default), stop it,
    or stay. "leave" and "stop" are the answers; None stays."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l,enter", "answer('leave')", "Leave it running", id="detach_leave"),
        Binding("s", "answer('stop')", "Stop the batch", id="detach_stop"),
        Binding("c,escape", "answer(None)", "Cancel", id="detach_cancel"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Quit subq?"
            yield Label(
                "A job is running or waiting. The batch can go on without this window: "
                "open subq again from any terminal to see it. Stopping it keeps the running "
                "job's checkpoint and the queue.",
                classes="dialog-text",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("[u]L[/u]eave it running", id="leave", variant="primary", compact=True)
                yield Button("[u]S[/u]top the batch", id="stop", compact=True)
                yield Button("[u]C[/u]ancel", id="cancel", compact=True)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)
