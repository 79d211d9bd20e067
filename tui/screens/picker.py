"""The file picker: a media-only folder tree with marks, and a path/glob input that completes.

Reading folders and probing durations happen in thread workers (DirectoryTree already loads
folders in one), so a huge or network-mounted tree never blocks the screen. The screen
answers with concrete file paths; the engine adds them.
"""

from __future__ import annotations

import asyncio
import glob
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from subq.engine import MediaError, expand_path, is_media, probe_isolated
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.suggester import Suggester
from textual.timer import Timer
from textual.widgets import DirectoryTree, Footer, Input, Static
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from ..widgets.formatting import display_path, short_duration, theme_style
from .form import FormScreen

MAX_SUGGEST = 2000  # entries read from one folder for a completion


def complete_path(value: str) -> str | None:
    """Bash-like completion of the last path component: the common prefix, or the one match."""
    if not value or glob.has_magic(value):
        return None
    expanded = os.path.expanduser(value)
    folder, prefix = os.path.split(expanded)
    try:
        names = []
        with os.scandir(folder or ".") as entries:
            for n, entry in enumerate(entries):
                if n > MAX_SUGGEST:
                    break
                if entry.name.startswith(prefix) and (
                    prefix.startswith(".") or not entry.name.startswith(".")
                ):
                    names.append((entry.name, entry.is_dir()))
    except OSError:
        return None
    if not names:
        return None
    if len(names) == 1:
        name, is_dir = names[0]
        completion = name + ("/" if is_dir else "")
    else:
        completion = os.path.commonprefix([n for n, _d in names])  # noqa: RUF071 - names, not paths
    if len(completion) <= len(prefix):
        return None
    return value + completion[len(prefix) :]


def resolve(items: Iterable[str], cancelled: Callable[[], bool] = lambda: False) -> list[Path]:
    """The files the items name, by the engine's rules (`expand_path`: a file as given, the
    media files in a folder or glob, links followed once); a missing path names none, and
    a file named twice is listed once. A cancel stops between folders (a partial list)."""
    out: dict[Path, None] = {}
    for item in items:
        if cancelled():
            break
        out.update(dict.fromkeys(expand_path(item, cancelled)))
    return list(out)


class PathSuggester(Suggester):
    """Suggests the completion of the path being typed; the folder is read off the UI thread."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value)


class PathInput(Input):
    """Tab takes the suggested completion (or moves on when there is none)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "complete", "Complete", show=False, id="picker_complete"),
        Binding("down", "app.focus_next", "To the tree", show=False),
    ]

    def action_complete(self) -> None:
        if self.cursor_at_end and self._suggestion:
            self.action_cursor_right()
        else:
            self.screen.focus_next()


class MediaTree(DirectoryTree):
    """A folder tree of media files (all files with `show_all`), with marked entries."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Mark", id="picker_mark"),
        Binding("enter", "add", "Add", id="picker_add"),
        Binding("right", "open", "Open", show=False),
        Binding("left", "close", "Close", show=False),
        Binding("h", "screen.toggle_all", "Show all", id="picker_all"),
    ]

    class AddRequested(Message):
        """Enter in the tree: add what is marked, or the entry under the cursor."""

    class MarksChanged(Message):
        """Space marked or unmarked an entry: the summary line recounts."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        self.show_all = False
        self.marked: dict[Path, None] = {}

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        """Runs in DirectoryTree's loader thread: stat calls here never block the UI."""
        if self.show_all:
            return list(paths)
        return [
            p for p in paths if not p.name.startswith(".") and (is_media(p) or self._safe_is_dir(p))
        ]

    def render_label(self, node: TreeNode, base_style: Style, style: Style) -> Text:  # type: ignore[override]
        label = super().render_label(node, base_style, style)
        if node.data is not None and node.data.path in self.marked:
            mark = theme_style(self.app.theme_variables, "text-success", bold=True)
            return Text.assemble(("✔ ", mark), label)
        return label

    def action_toggle_mark(self) -> None:
        node = self.cursor_node
        if node is None or node.data is None:
            return
        path = node.data.path
        if path in self.marked:
            del self.marked[path]
        else:
            self.marked[path] = None
        node.refresh()
        self.post_message(self.MarksChanged())
        self.action_cursor_down()

    def action_add(self) -> None:
        self.post_message(self.AddRequested())

    def action_open(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            node.expand()
        else:
            self.action_cursor_down()

    def action_close(self) -> None:
        node = self.cursor_node
        if node is not None and node.is_expanded:
            node.collapse()
        elif node is not None and node.parent is not None:
            self.move_cursor(node.parent)


class PickerScreen(FormScreen[list[str] | None]):
    """Answers with the files to add, or None."""

    FIRST_FIELD = "#picker-input"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Back", id="picker_back"),
        Binding("ctrl+h", "toggle_all", "Show all", show=False, id="picker_all_ctrl"),
    ]

    class Counted(Message):
        """The count worker's answer (or progress) for the summary line."""

        def __init__(self, text: str, files: int) -> None:
            super().__init__()
            self.text = text
            self.files = files

    class Resolved(Message):
        """The add worker's answer: what was asked for and the files it found."""

        def __init__(self, items: list[str], files: list[Path]) -> None:
            super().__init__()
            self.items = items
            self.files = files

    def __init__(self, root: Path | None = None) -> None:
        super().__init__()
        self.root = root or Path.cwd()
        self._durations: dict[tuple[Path, float], float | None] = {}
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-body") as body:
            body.border_title = "Add files"
            yield PathInput(
                placeholder="path, folder or glob, e.g. ~/videos/**/*.mkv "
                "(tab completes, enter adds)",
                suggester=PathSuggester(),
                id="picker-input",
                compact=True,
            )
            yield MediaTree(self.root, id="picker-tree")
            yield Static("", id="picker-summary")
        yield Footer()

    def on_mount(self) -> None:
        tree = self.query_one(MediaTree)
        tree.root.set_label(display_path(self.root, relative=False))
        tree.border_title = "media files · space marks · h shows all"
        # typing goes to the path: `a`, then "/data/*.mp3" and Enter adds what was typed
        # (with the tree focused the keys went nowhere and Enter added the whole folder);
        # down or tab moves to the tree
        self.focus_first_field()
        self._recount()

    @property
    def media_tree(self) -> MediaTree:
        return self.query_one(MediaTree)

    async def action_toggle_all(self) -> None:
        tree = self.media_tree
        tree.show_all = not tree.show_all
        tree.border_title = (
            ("all files" if tree.show_all else "media files")
            + " · space marks · h "
            + ("media only" if tree.show_all else "shows all")
        )
        await tree.reload()
        tree.root.set_label(display_path(tree.path, relative=False))

    # -- what would be added ----------------------------------------------------------
    def _items(self) -> list[str]:
        value = self.query_one(PathInput).value.strip()
        items = [str(p) for p in self.media_tree.marked]
        if value:
            items.insert(0, value)
        if not items:
            node = self.media_tree.cursor_node
            if node is not None and node.data is not None:
                items = [str(node.data.path)]
        return items

    @on(MediaTree.MarksChanged)
    @on(Input.Changed)
    @on(MediaTree.NodeHighlighted)
    def _recount(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(
            0.2, lambda: self.count(self._items(), len(self.media_tree.marked))
        )

    @work(thread=True, exclusive=True, group="count")
    def count(self, items: list[str], marked: int) -> None:
        """Say what enter would add: how many files and how long, probing in this thread."""
        worker = get_current_worker()
        if not items:
            self.post_message(
                self.Counted("nothing to add: type a path or mark files with space", 0)
            )
            return
        files = resolve(items, lambda: worker.is_cancelled)
        total, unknown = 0.0, 0
        for n, path in enumerate(files, 1):
            if worker.is_cancelled:
                return
            duration = self._duration(path)
            if duration is None:
                unknown += 1
            else:
                total += duration
            if n % 25 == 0:
                self.post_message(self.Counted(f"probing {n}/{len(files)} files…", len(files)))
        what = (
            f"{marked} marked"
            if marked
            else display_path(items[0])
            if len(items) == 1
            else f"{len(items)} items"
        )
        parts = [
            f"enter adds {what}: {_files(len(files))}",
            f"{short_duration(total)} total",
            f"{unknown} not readable" if unknown else "",
        ]
        if not files:
            parts = [f"no media files in {', '.join(display_path(i) for i in items[:2])}"]
        self.post_message(self.Counted(" · ".join(p for p in parts if p), len(files)))

    def _duration(self, path: Path) -> float | None:
        try:
            key = (path, path.stat().st_mtime)
        except OSError:
            return None
        if key not in self._durations:
            try:
                # out of process: a crafted file in the folder costs only itself
                self._durations[key] = probe_isolated(path).duration
            except MediaError:
                self._durations[key] = None
        return self._durations[key]

    @on(Counted)
    def _counted(self, message: Counted) -> None:
        self.query_one("#picker-summary", Static).update(Text(message.text))

    # -- adding ---------------------------------------------------------------------
    @on(Input.Changed, "#picker-input")
    def _follow_folder(self, event: Input.Changed) -> None:
        value = os.path.expanduser(event.value)
        if value.endswith("/") and os.path.isdir(value) and Path(value) != self.media_tree.path:
            self.media_tree.path = Path(value)

    @on(Input.Submitted, "#picker-input")
    @on(MediaTree.AddRequested)
    def _add(self) -> None:
        self.add(self._items())

    @work(thread=True, exclusive=True, group="add")
    def add(self, items: list[str]) -> None:
        """Resolve what to add in a thread (folders and globs can be huge)."""
        worker = get_current_worker()
        self.post_message(self.Resolved(items, resolve(items, lambda: worker.is_cancelled)))

    @on(Resolved)
    def _added(self, message: Resolved) -> None:
        items, files = message.items, message.files
        if not files:
            shown = ", ".join(display_path(i) for i in items[:2]) or "nothing selected"
            self.notify(f"No media files in {shown}", severity="warning")
            return
        self.dismiss([str(f) for f in files])


def _files(n: int) -> str:
    return f"{n} file{'s' if n != 1 else ''}"
