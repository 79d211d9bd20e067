"""The Textual app: wires one running Engine to the screens, and `run_app` for the CLI.

The app never creates or drives the engine's thread itself: `run_app` builds and starts the
engine, and tests hand in their own. Engine events arrive through `EventBridge` (messages
posted from engine threads; progress and memory coalesced and drawn on a 4 Hz timer).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from subq.engine import (
    Engine,
    EngineState,
    Event,
    JobChanged,
    JobState,
    LogEmitted,
    Settings,
    default_state_path,
    hard_exit,
    saved_work,
)
from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel

from .messages import EngineEvents, EventBridge
from .screens.details import DetailsScreen
from .screens.main import MainScreen
from .screens.palette import SubqCommands

FLUSH_INTERVAL = 0.25  # seconds between redraws of progress and memory (4 Hz)
EVENT_SLICE = 0.01  # seconds of engine events handled before keys and frames get a turn
EVENT_CHUNK = 50  # events taken from the bridge at a time within a slice
GC_PAUSE_BACKLOG = 500  # rows waiting to be drawn that pause the cyclic GC
SHUTDOWN_TIMEOUT = 10.0  # run_app's wait for the engine when the app ended some other way
QUIT_GRACE = 3.0  # quit waits this long for a safe point, then commits what it has: on a
# CPU one transcription window can take longer, and only that window's work is redone


class SubqApp(App[int]):
    """The queue UI over one engine; `clock` stamps log lines (tests pass a fixed one)."""

    CSS_PATH = "app.tcss"
    TITLE = "subq"
    COMMANDS = App.COMMANDS | {SubqCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "question_mark",
            "help",
            "Help",
            id="help",
            key_display="?",
            tooltip="Every key, grouped",
        ),
        Binding(
            "q",
            "quit",
            "Quit",
            id="quit",
            tooltip="Quit; with work in progress, asks to pause first (the queue is kept)",
        ),
    ]
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [
        (0, "-narrow"),
        (120, "-medium"),
        (160, "-wide"),
    ]

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        start_paths: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.engine = engine
        self.clock = clock
        self.start_paths = [str(p) for p in start_paths]
        self.bridge = EventBridge(self)
        self._gc_paused = False  # the cyclic GC paused by _pause_gc_while (UI thread only)
        self.detached = bool(getattr(engine, "detached", False))  # an engine service's app
        self.main = MainScreen(engine)
        self.quitting = False
        self.farewell = ""  # printed after the app ends: where the work left in the service is
        self.connected = False  # True once the main screen shows the engine's queue

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast is plain text: messages carry file names, and a name is never markup
        (`lecture [/slides].mp4` raised MarkupError and ended the app; `[@click=app.quit]`
        in a name became an action). subq writes no markup in its own messages."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def get_default_screen(self) -> MainScreen:
        return self.main

    def connect(self) -> None:
        """Called once the main screen is mounted: subscribe, show the queue, add paths."""
        restored = self.engine.paused and any(j.state.runnable for j in self.engine.jobs())
        self.engine.subscribe(self.bridge)  # before the snapshot, so nothing falls between
        self.main.load(self.clock())
        if restored:
            self.notify(
                "The saved queue is paused so nothing starts by surprise: press p to resume",
                title="Queue restored",
                timeout=10,
            )
        if self.start_paths:
            self.engine.add(self.start_paths)
        self.set_interval(FLUSH_INTERVAL, self._draw_pending)
        self.connected = True

    @on(EngineEvents)
    def _engine_events(self) -> None:
        """Events in order, a slice of about EVENT_SLICE seconds at a time."""
        ends = time.perf_counter() + EVENT_SLICE
        while True:
            events, more = self.bridge.take_events(EVENT_CHUNK)
            for event in events:
                self._engine_event(event)
            if not more:
                return
            if time.perf_counter() >= ends:
                self.bridge.wake()  # the rest after the keys and frames waiting now
                return

    def _engine_event(self, event: Event) -> None:
        self.main.apply(event, self.clock())
        screen = self.screen
        if isinstance(screen, DetailsScreen):
            job_id = (
                event.job.id
                if isinstance(event, JobChanged)
                else (event.job_id if isinstance(event, LogEmitted) else None)
            )
            job = self.main.table.job(screen.job.id)
            if job_id == screen.job.id and job is not None:
                screen.show(job, list(self.main.job_logs.get(job.id, ())))

    def _draw_pending(self) -> None:
        pending = self.bridge.take()
        self.main.flush(pending, self.clock())
        self._pause_gc_while(self.main.table.backlog >= GC_PAUSE_BACKLOG)

    def on_unmount(self) -> None:
        self._pause_gc_while(False)  # the process may go on (tests, run_app's shutdown)
        gc.unfreeze()

    def _pause_gc_while(self, busy: bool) -> None:
        """No cyclic GC while thousands of rows arrive, as Textual pauses it while scrolling:
        with 10,000 jobs' rows in memory a full pass takes 65-170 ms on this 2-core machine,
        and an add set off about a dozen of them, each one a frozen key press. When the rows
        are in, what exists is frozen (`gc.freeze`): the queue's rows live as long as the
        app, so later passes skip them instead of paying for them again. The price: a
        reference cycle among objects alive at that moment is never collected, only freed
        by reference counting (rows, jobs and cells hold none)."""
        if busy and not self._gc_paused:
            self._gc_paused = gc.isenabled()
            gc.disable()
        elif not busy and self._gc_paused:
            self._gc_paused = False
            gc.freeze()
            gc.enable()

    # -- app-wide actions ---------------------------------------------------------------
    def action_help(self) -> None:
        from .screens.help import HelpScreen

        keys: dict[str, tuple[list[str], str]] = {}
        for binding in Binding.make_bindings([*MainScreen.BINDINGS, *self.BINDINGS]):
            if binding.id:
                shown, _text = keys.setdefault(
                    binding.id, ([], binding.tooltip or binding.description)
                )
                shown.append(self.get_key_display(binding))
        keys["palette"] = (
            [self.get_key_display(Binding("ctrl+p", ""))],
            "command palette: every action by name",
        )
        self.push_screen(HelpScreen(keys, self._quit_dialog_keys()))

    def _quit_dialog_keys(self) -> tuple[str, str]:
        """The help line for the quit dialog this app opens, read off its bindings."""
        from .screens.dialogs import DetachScreen, QuitScreen

        dialog = DetachScreen if self.detached else QuitScreen
        answers: dict[str, Binding] = {}  # its first key for each answer, in order
        for binding in Binding.make_bindings(dialog.BINDINGS):
            answers.setdefault(binding.action, binding)
        keys = " / ".join(b.key for b in answers.values())
        return f"quit dialog: {keys}", " / ".join(b.description.lower() for b in answers.values())

    def work_in_progress(self) -> bool:
        """A job running, or runnable jobs while the batch is not paused."""
        jobs = self.main.table.jobs()
        running = any(j.state == JobState.RUNNING for j in jobs)
        return running or (not self.main.paused and any(j.state.runnable for j in jobs))

    async def action_quit(self) -> None:
        """Quit; with work in progress ask first, since quitting pauses the batch."""
        if self.quitting:
            return
        if self.detached:
            self._quit_detached()
            return
        if not self.work_in_progress():
            self.stop_and_exit(pause=False)
            return
        from .screens.dialogs import QuitScreen

        def answered(quit_: bool | None) -> None:
            if quit_:
                self.stop_and_exit(pause=True)

        self.push_screen(QuitScreen(), answered)

    def _left_behind(self, busy: bool, waiting: int) -> str:
        """The line a user leaving the app is told: where the work goes on, or waits. A paused
        batch keeps the engine too (it ends only when nothing waits), which went unsaid."""
        pid = getattr(self.engine, "pid", "?")
        if busy:
            return (
                f"subq: the batch goes on in your engine (pid {pid}): `subq` shows it "
                "again, `subq status` prints it, `subq stop` ends it"
            )
        if waiting:
            files = f"{waiting} file{'s' if waiting > 1 else ''}"
            return (
                f"subq: your engine (pid {pid}) keeps the paused batch ({files} waiting): "
                "`subq` shows it again and p resumes it, `subq stop` ends it"
            )
        return ""

    def _quit_detached(self) -> None:
        """The engine is a service: leave it running (the default) or stop it."""
        from .screens.dialogs import DetachScreen

        busy = self.work_in_progress()
        waiting = sum(j.state.runnable for j in self.main.table.jobs())

        def answered(answer: str | None) -> None:
            if answer == "leave":
                self.quitting, self.farewell = True, self._left_behind(busy, waiting)
                self.engine.shutdown()  # detach; the batch goes on
                self.exit(0)
            elif answer == "stop":
                self.quitting = True
                self.main.stopping()
                self._stop_service()

        if busy:
            self.push_screen(DetachScreen(), answered)
        else:
            answered("leave")  # nothing to leave running: the service ends when idle

    @work(thread=True, exit_on_error=False, group="shutdown")
    def _stop_service(self) -> None:
        try:
            self.engine.stop_engine(timeout=SHUTDOWN_TIMEOUT)  # type: ignore[attr-defined]
        finally:
            self.call_from_thread(self.exit, 0)

    def stop_and_exit(self, pause: bool) -> None:
        """Pause (keeping the queue), stop the engine off the UI thread, then exit."""
        self.quitting = True
        if pause:
            self.engine.pause()
        self.main.stopping()
        self._stop_engine()

    @work(thread=True, exit_on_error=False, group="shutdown")
    def _stop_engine(self) -> None:
        try:
            self.engine.shutdown(timeout=QUIT_GRACE)
            # Read here, after the join: the engine thread has stopped or outlived the wait.
            if self.engine.state != EngineState.STOPPED:  # a window outlived it: commit now
                self.engine.emergency_stop()
        finally:  # whatever happened, the user asked to leave
            self.call_from_thread(self.exit, 0)


def run_app(paths: list[str], settings: Settings, state: Path | None) -> int:
    """`subq [PATHS]`: engine in its thread, the app in the main one, signals handled."""
    state_path = state or default_state_path()
    paused = not paths and saved_work(state_path)  # nothing starts by surprise
    engine = Engine(settings, state_path, whole_queue=True, paused=paused)
    app = SubqApp(engine, start_paths=paths)
    with hangup_handled(_signal_handler(engine, app)):
        engine.start()
        try:
            app.run()
        finally:
            # After quit the app has already waited; don't keep a closed terminal waiting.
            engine.shutdown(timeout=0.1 if app.quitting else SHUTDOWN_TIMEOUT)
            engine.close()
    return app.return_code or 0


@contextlib.contextmanager
def hangup_handled(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """`handler` for SIGHUP (the SSH session dropped) and SIGTERM while the app runs;
    Textual installs none for them. The previous handlers come back afterwards."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _signal_handler(engine: Engine, app: SubqApp) -> Callable[[int, Any], None]:
    """SSH dropped (SIGHUP) or killed (SIGTERM): checkpoint and exit within 2 s.

    Textual installs no handler for these, and a clean Textual exit waits for the engine's
    current window; hard_exit gives the engine 1.5 s, then commits and leaves.
    """

    def handle(signum: int, _frame: Any) -> None:
        if signum == signal.SIGTERM:
            _restore_terminal(app)
        hard_exit(engine, 128 + signum, grace=1.5)

    return handle


def _restore_terminal(app: SubqApp) -> None:
    """Best effort, for a terminal that is still there: leave raw mode and the alt screen."""
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ else -1
        if fd < 0 or not os.isatty(fd):
            return
        os.set_blocking(fd, False)
        os.write(
            fd,
            b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?2004l"
            b"\x1b[?7h\x1b[<u\x1b[?1049l\x1b[?25h\x1b[?1004l",
        )
        attrs = getattr(app._driver, "attrs_before", None)
        if attrs is not None:
            import termios

            termios.tcsetattr(sys.__stdin__.fileno(), termios.TCSANOW, attrs)
    except Exception:  # the terminal may be gone; exiting matters more
        pass
