"""The engine's log file: where tracebacks go, so error lines can point at them honestly.

A message may say "details in PATH" only when that file is really being written; a full
disk or a read-only home must not turn logging itself into a traceback on the terminal.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .private import private_dir, private_file
from .settings import log_path

_attached: Path | None = None


class _QuietFileHandler(logging.FileHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        """A log line that cannot be written is dropped, never printed over the app."""


def attach() -> Path | None:
    """Send the engine's log to the user's state dir once per process; None if impossible."""
    global _attached
    if _attached is not None:
        return _attached
    path = log_path()
    try:
        private_dir(path.parent)
        private_file(path)  # it names every file the user worked on: theirs alone
        handler = _QuietFileHandler(path, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
    logger = logging.getLogger("subq")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the terminal belongs to the app and the printer
    _attached = path
    return path


def details(what: str = "details") -> str:
    """' (details in PATH)' when the log file exists, else nothing: never a false claim."""
    if _attached is not None and _attached.exists():
        return f" ({what} in {_attached})"
    return ""
