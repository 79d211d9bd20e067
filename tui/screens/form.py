"""Screens opened to be typed in at once: the picker's path and the settings form.

A user who presses `a` and types a path straight away (or a script's tmux send-keys) sends
keys while the screen is still being built. Textual hands a key to the focused widget as
it comes; until the first field has the focus, that is the screen, which has no use for
it, and the keys were lost. Here the first field takes the focus as the screen mounts, and
keys that reached the screen meanwhile are passed on to it in order.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual import events
from textual.screen import Screen
from textual.widgets import Input

ResultType = TypeVar("ResultType")


class FormScreen(Screen[ResultType]):
    """A screen whose first field, `FIRST_FIELD` (a selector), takes what is typed on it."""

    FIRST_FIELD: ClassVar[str]

    def focus_first_field(self) -> None:
        """Call from on_mount: at once (Widget.focus would wait a turn, losing keys)."""
        self.set_focus(self.query_one(self.FIRST_FIELD, Input))

    def on_key(self, event: events.Key) -> None:
        """Keys typed before the field had the focus came to the screen: pass them on.
        Keys typed into a field never reach here (the field stops them)."""
        field = self.query_one(self.FIRST_FIELD, Input)
        if event.is_printable and self.focused is field:
            event.stop()
            field.post_message(events.Key(event.key, event.character))
