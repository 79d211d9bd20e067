"""The settings form: edits the engine's Settings, validates, saves the TOML, applies.

Settings.validate() is the one judge of what is allowed; its one-line SettingsError is shown
under the form, never raised into the app. Saved settings apply to jobs not started yet
(the engine's update_settings), and to later runs of subq and `subq run` (the config file).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from subq.engine import (
    BACKENDS,
    CLEANUP_POLICIES,
    FORMATS,
    Settings,
    SettingsError,
    cluster_problem,
    save_config,
    split_list,
)
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Input, Label, Select, Static

from ..widgets.formatting import display_path
from .form import FormScreen

if TYPE_CHECKING:
    from subq.engine import Engine

TEXT_FIELDS = {
    "model": ("model", "tiny.en, base (99 languages), small, large-v3, turbo, or a path"),
    "language": ("language", "spoken language, e.g. en; empty: detect"),
    "translate_to": ("translate to", "target languages, e.g. de,fr; empty: none"),
    "translation_model": ("translation model", "empty: Helsinki-NLP/opus-mt-{src}-{tgt}"),
    "formats": ("formats", f"one or more of {','.join(FORMATS)}"),
    "max_line_width": ("line width", "characters per line (default 42)"),
    "max_lines": ("lines per cue", "default 2"),
    "max_cue_seconds": ("longest cue (s)", "default 7"),
    "max_cps": ("reading (chars/s)", "characters per second a cue may ask (default 17)"),
    "output_dir": ("output dir", "empty: next to each input"),
    "device": ("device", "auto, cpu, cuda:N, a list (cuda:0,cuda:1; cpu,cpu) or all"),
    "cluster": (
        "Ray cluster",
        "empty: this machine; auto, HOST:PORT, ray://HOST:10001 or local (needs subq[ray])",
    ),
    "keep_alive": ("keep-alive (s)", "after the queue drains; 0 unloads at once, -1 never"),
    "beam_size": ("beam size", "empty: greedy"),
    "asr_batch_size": ("ASR batch", "0: off; N: VAD chunks decoded N at a time"),
    "worker_timeout": ("worker timeout (s)", "a call silent this long is hung; 0: never"),
    "translation_batch_size": ("translation batch", "segments per batch (default 32)"),
}
CHOICES = {  # the settings that take one of a few values: (label, [(shown, value)])
    "task": (
        "task",
        [("transcribe the language spoken", "transcribe"), ("translate into English", "translate")],
    ),
    "condition_on_previous_text": (
        "previous text",
        [("prompt each window with it", True), ("no prompt", False)],
    ),
    "fill_gaps": (
        "skipped speech",
        [("decode again without the prompt", True), ("leave empty (as the library does)", False)],
    ),
    "word_timestamps": (
        "word times",
        [("cut cues at the words", True), ("none: split segments by characters", False)],
    ),
    "karaoke": (
        "ass karaoke",
        [("plain cues", False), ("highlight each word as spoken", True)],
    ),
    "keep_junk": (
        "loops, invented lines",
        [("take out, each listed", False), ("keep everything whisper wrote", True)],
    ),
    "skip_subtitled": (
        "files with subtitles",
        [("transcribe them too", False), ("skip them", True)],
    ),
    "oom_fallback": (
        "GPU out of memory",
        [("retry lighter, then fail", "none"), ("retry lighter, then the CPU", "cpu")],
    ),
}

LAYOUT_FIELDS = ("formats", "max_line_width", "max_lines", "max_cue_seconds", "max_cps")
BACKEND_LABELS = {"auto": "auto (faster-whisper on CPU, whisper on CUDA)"}


class SettingsScreen(FormScreen[None]):
    """ctrl+s saves; escape leaves without saving."""

    FIRST_FIELD = "#model"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="settings_save"),
        Binding("escape", "app.pop_screen", "Back", id="settings_back"),
    ]

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.original = engine.settings

    def compose(self) -> ComposeResult:
        s = self.original
        with VerticalScroll(id="settings-body") as body:
            body.border_title = "Settings (apply to jobs not started yet)"
            with Grid(id="settings-grid"):
                yield from self._text("model", s)
                yield Label("backend")
                yield Select(
                    [(BACKEND_LABELS.get(b, b), b) for b in BACKENDS],
                    value=s.backend,
                    allow_blank=False,
                    id="backend",
                    compact=True,
                )
                for name in ("language", "translate_to", "translation_model"):
                    yield from self._text(name, s)
                for name in LAYOUT_FIELDS:
                    yield from self._text(name, s)
                for name in ("output_dir", "device", "cluster"):
                    yield from self._text(name, s)
                yield Label("cleanup")
                yield Select(
                    [
                        (
                            f"{c} (free cached GPU memory after each {c})"
                            if c != "never"
                            else "never",
                            c,
                        )
                        for c in CLEANUP_POLICIES
                    ],
                    value=s.cleanup,
                    allow_blank=False,
                    id="cleanup",
                    compact=True,
                )
                for name in ("keep_alive", "beam_size", "asr_batch_size", "worker_timeout"):
                    yield from self._text(name, s)
                yield from self._text("translation_batch_size", s)
                for name, (label, options) in CHOICES.items():
                    yield Label(label)
                    yield Select(
                        options, value=getattr(s, name), allow_blank=False, id=name, compact=True
                    )
            yield Static("", id="settings-error")
            with Horizontal(id="settings-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary", compact=True)
                yield Button("Back (esc)", id="back", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.focus_first_field()  # typing goes somewhere seen, from the first key

    def _text(self, name: str, s: Settings) -> ComposeResult:
        label, hint = TEXT_FIELDS[name]
        value = getattr(s, name)
        if isinstance(value, tuple):
            value = ",".join(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        yield Label(label)
        yield Input(
            "" if value is None else str(value),
            placeholder=hint,
            id=name,
            compact=True,
            tooltip=hint,
        )

    def _value(self, name: str) -> str:
        return self.query_one(f"#{name}", Input).value.strip()

    def read(self) -> Settings:
        """The form as Settings; raises SettingsError with a one-line message."""
        try:
            keep_alive = float(self._value("keep_alive") or 0)
        except ValueError:
            raise SettingsError("keep-alive: enter seconds (0 unloads at once, -1 never)") from None
        try:
            worker_timeout = float(self._value("worker_timeout") or 0)
        except ValueError:
            raise SettingsError("worker timeout: enter seconds (0: never)") from None
        beam = self._value("beam_size")
        if beam and not beam.isdigit():
            raise SettingsError("beam size: enter a whole number, or leave it empty")
        per_batch = self._value("translation_batch_size") or "32"
        if not per_batch.isdigit():
            raise SettingsError("translation batch: enter a whole number of segments")
        batch = self._value("asr_batch_size") or "0"
        if not batch.isdigit():
            raise SettingsError("ASR batch: enter 0 (off) or a whole number of chunks")
        layout = self._layout()
        model = self._value("model")
        if not model:
            raise SettingsError("model: enter a model name such as tiny.en, or a path")
        if problem := cluster_problem(self._value("cluster")):
            raise SettingsError(problem)
        return dataclasses.replace(
            self.original,
            model=model,
            backend=str(self.query_one("#backend", Select).value),
            language=self._value("language") or None,
            translate_to=split_list(self._value("translate_to")),
            translation_model=self._value("translation_model") or None,
            **layout,
            output_dir=self._value("output_dir") or None,
            device=self._value("device") or "auto",
            cluster=self._value("cluster"),
            cleanup=str(self.query_one("#cleanup", Select).value),
            keep_alive=keep_alive,
            beam_size=int(beam) if beam else None,
            asr_batch_size=int(batch),
            worker_timeout=worker_timeout,
            translation_batch_size=int(per_batch),
            **{name: self.query_one(f"#{name}", Select).value for name in CHOICES},
        ).validate()

    def _layout(self) -> dict[str, object]:
        """The formats and the layout fields as settings; SettingsError names a bad one."""
        values: dict[str, object] = {"formats": split_list(self._value("formats"))}
        for name, kind in (
            ("max_line_width", int),
            ("max_lines", int),
            ("max_cue_seconds", float),
            ("max_cps", float),
        ):
            text = self._value(name) or str(getattr(Settings(), name))
            try:
                values[name] = kind(text)
            except ValueError:
                label = TEXT_FIELDS[name][0]
                what = "a whole number" if kind is int else "a number"
                raise SettingsError(f"{label}: enter {what}") from None
        return values

    def action_save(self) -> None:
        try:
            settings = self.read()
            path = save_config(settings)
        except SettingsError as exc:
            self._refused(str(exc))
            return
        except OSError as exc:
            self._refused(f"cannot write the settings file: {exc.strerror or exc}")
            return
        self.engine.update_settings(settings)
        self.notify(
            f"Saved to {display_path(path, relative=False)}; applies to jobs not started yet",
            title="Settings",
        )
        self.dismiss()

    def _refused(self, why: str) -> None:
        """Said under the form, scrolled into view, and in a notification: on a short
        terminal the line under the form is below the fold."""
        error = self.query_one("#settings-error", Static)
        error.update(Text(why))
        error.add_class("-error")
        error.scroll_visible(animate=False)
        self.notify(why, title="Not saved", severity="error", markup=False)

    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        self.dismiss()
