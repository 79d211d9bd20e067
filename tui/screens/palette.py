"""Every subq action in the command palette (ctrl+p), named as in the help screen.

The palette can be opened over any screen; queue actions always act on the main screen
(the queue), whichever screen is on top.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, action on the main screen or "app.*", help)
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("Add files", "add", "open the file picker (a)"),
    ("Pause / resume the batch", "toggle_pause", "stop at the next safe point, or go on (p)"),
    ("Details of the selected job", "details", "settings, timings, log, subtitles (enter)"),
    ("Move job up", "move('up')", "K or shift+up"),
    ("Move job down", "move('down')", "J or shift+down"),
    ("Move job to the top", "move('top')", "t"),
    ("Move job to the bottom", "move('bottom')", "b"),
    ("Cancel the selected job", "cancel_job", "x"),
    ("Remove the selected job", "remove_job", "delete"),
    ("Retry the selected job", "retry", "r: queue a finished job again"),
    ("Clear finished jobs", "clear_finished", "c"),
    ("Unload a model", "unload", "whisper, translation or all (u)"),
    ("Release GPU", "release_gpu", "pause and unload every model (R)"),
    ("Settings", "settings", "model, languages, formats, output, memory (s)"),
    ("Help: all keys", "app.help", "?"),
    ("Quit", "app.quit", "q: pause and quit keeps the queue"),
)


class SubqCommands(Provider):
    """subq's actions, searchable by title."""

    def _commands(self) -> Iterator[tuple[str, str, str]]:
        yield from ACTIONS

    async def _run(self, action: str) -> None:
        from .main import MainScreen

        main = next((s for s in self.app.screen_stack if isinstance(s, MainScreen)), None)
        if action.startswith("app.") or main is None:
            await self.app.run_action(action.removeprefix("app."))
        else:
            await main.run_action(action)

    async def discover(self) -> Hits:
        for title, action, help_text in self._commands():
            yield DiscoveryHit(title, partial(self._run, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(title), partial(self._run, action), help=help_text
                )
