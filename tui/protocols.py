"""What the screens and widgets may ask of the app, as a protocol: they reach it through
`self.app` and never import the app's module, so the app's modules import downward only
(tui/app.py -> screens -> widgets), with no circle through a type hint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class AppView(Protocol):
    """The app as a screen sees it: its clock (tests pass a fixed one), whether a quit is
    under way, and the call that subscribes it to the engine once the main screen is up."""

    clock: Callable[[], float]
    quitting: bool

    def connect(self) -> None: ...
