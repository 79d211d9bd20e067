"""Transcription with openai-whisper, stoppable between decoding windows.

openai-whisper's `transcribe` runs one loop over 30 s windows and only reports through tqdm.
We install a per-model hook on `model.decode`, which the loop calls at the start of every
window (silent windows included, which tqdm never reports). At that point the loop's own
locals hold the finished segments and the seek offset, so the hook can publish progress,
store a checkpoint, and raise to stop the stage without losing a finished window. Resuming
passes the stored offset as `clip_timestamps` and the previous text as the prompt.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import faults

SAMPLE_RATE = 16_000
HOP_LENGTH = 160
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
WINDOW_SECONDS = 30.0
_PUNCTUATION_ONLY = re.compile(r"^[\W_]*$", re.UNICODE)


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0

    def to_json(self) -> list[Any]:
        return [self.start, self.end, self.text, self.no_speech_prob, self.avg_logprob]

    @classmethod
    def from_json(cls, row: list[Any]) -> Segment:
        return cls(*row)


@dataclass(frozen=True)
class TranscribeOptions:
    """Everything that shapes the transcript, passed whole (one value, not 20 keywords)."""

    language: str | None = None
    beam_size: int | None = None
    condition_on_previous_text: bool = True
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    fp16: bool = False
    word_timestamps: bool = True
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    batch_size: int = 0  # > 0: VAD-cut chunks decoded this many at a time (asr_batched)

    def whisper_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = dict(
            language=self.language,
            condition_on_previous_text=self.condition_on_previous_text,
            no_speech_threshold=self.no_speech_threshold,
            logprob_threshold=self.logprob_threshold,
            fp16=self.fp16,
            temperature=self.temperature,
            word_timestamps=self.word_timestamps,
            verbose=None,  # None silences both the text dump and the tqdm bar
        )
        if self.beam_size and self.beam_size > 1:
            kw["beam_size"] = self.beam_size
        return kw


@dataclass(frozen=True)
class Checkpoint:
    """How far a transcription got: every finished segment and where the next window starts."""

    seek: float
    segments: tuple[Segment, ...] = ()
    prompt: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "seek": self.seek,
            "prompt": self.prompt,
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        segments = tuple(Segment.from_json(s) for s in data.get("segments", []))
        return cls(seek=float(data["seek"]), segments=segments, prompt=data.get("prompt", ""))


@dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...]
    language: str | None
    windows: int = 0
    stats: dict[str, float] = field(default_factory=dict)


class TranscriptionStopped(Exception):
    """The window hook asked to stop; carries the checkpoint to resume from."""

    def __init__(self, checkpoint: Checkpoint, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.checkpoint = checkpoint
        self.cause = cause


class ModelLoadError(Exception):
    """The model cannot be loaded; str() is the one-line message for the user."""


WindowHook = Callable[[Checkpoint, float], None]
SegmentHook = Callable[[float], None]  # the fraction done, after each finished segment

FASTER_WHISPER = "faster-whisper"
WHISPER = "whisper"


def announce(checkpoint: Checkpoint, total: float, on_window: WindowHook | None) -> None:
    """A safe point of every backend: hand `on_window` the checkpoint and the fraction done;
    if it raises, the stage stops with `TranscriptionStopped` carrying that checkpoint."""
    if on_window is None:
        return
    try:
        on_window(checkpoint, min(1.0, checkpoint.seek / total) if total else 1.0)
    except Exception as exc:
        raise TranscriptionStopped(checkpoint, exc) from exc


def resolve_backend(
    backend: str, device: str, model: str = "tiny.en", *, batched: bool = False
) -> str:
    """The backend "auto" stands for on `device`, as docs/benchmarks.md measured it.

    On the CPU faster-whisper (int8) ran a whole batch in about a third of openai-whisper's
    time at the same WER; on CUDA nothing has been measured yet, so the reference backend
    stays. The model decides where it can only load in one: a whisper checkpoint file goes
    to openai-whisper, a CTranslate2 folder to faster-whisper, and batched decoding exists
    only in faster-whisper. Without the faster-whisper package, "auto" is openai-whisper.
    """
    if backend != "auto":
        return backend
    has_ct2 = importlib.util.find_spec("faster_whisper") is not None
    if not has_ct2:
        return WHISPER
    if batched:
        return FASTER_WHISPER
    path = model_path(model)
    if path is not None and path.is_file():
        return FASTER_WHISPER if path.name == "model.bin" else WHISPER
    if path is not None:
        return FASTER_WHISPER
    if model != "tiny.en" and model_path(str(_whisper_cache(model))) is not None:
        return WHISPER  # already downloaded for openai-whisper: works offline, as before
    if "/" in model or model.startswith("distil-"):
        return FASTER_WHISPER  # a Hugging Face repo id or a distil model: CTranslate2 only
    return FASTER_WHISPER if device == "cpu" else WHISPER


def model_path(name: str) -> Path | None:
    """`name` as an existing file or folder, else None (a model name, or no path at all:
    "~nouser/x" and 300-character names raise in pathlib; the loaders then say so)."""
    try:
        path = Path(name).expanduser()
        return path if path.exists() else None
    except (OSError, RuntimeError, ValueError):
        return None


def _whisper_cache(name: str) -> Path:
    """Where openai-whisper keeps a downloaded model (its own rule in whisper.load_model)."""
    import os

    root = os.getenv("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    stored = WHISPER_FILE_NAMES.get(name, name)
    return Path(root) / "whisper" / f"{stored}.pt"


# openai-whisper saves these names under their full ones (its _MODELS URLs); the table saves
# importing whisper (and torch) just to ask.
WHISPER_FILE_NAMES = {"large": "large-v3", "turbo": "large-v3-turbo"}


def load_backend(backend: str, name: str, device: str) -> Any:
    """Load a recogniser for `backend`; both return an object `run_backend` understands."""
    if backend == FASTER_WHISPER:
        from .asr_ct2 import load_ct2

        return load_ct2(name, device)
    return load_whisper(name, device)


def run_backend(
    backend: str,
    model: Any,
    audio: np.ndarray,
    options: TranscribeOptions,
    *,
    resume: Checkpoint | None = None,
    on_window: WindowHook | None = None,
    on_segment: SegmentHook | None = None,
) -> Transcript:
    """Transcribe with `backend`. `on_window` runs at every safe point (and may stop the
    stage); `on_segment` reports progress between them where the backend yields segments
    as it goes (faster-whisper); openai-whisper reports once per window."""
    if backend == FASTER_WHISPER and options.batch_size > 0:
        from .asr_batched import transcribe_batched

        return transcribe_batched(model, audio, options, resume=resume, on_window=on_window,
                                  on_segment=on_segment)
    if backend == FASTER_WHISPER:
        from .asr_ct2 import transcribe_ct2

        return transcribe_ct2(model, audio, options, resume=resume, on_window=on_window,
                              on_segment=on_segment)
    return transcribe(model, audio, options, resume=resume, on_window=on_window)


def footprint(model: Any) -> int:
    """Bytes the loaded recogniser holds (CTranslate2 models report their own)."""
    own = getattr(model, "footprint_bytes", None)
    if own is not None:
        return int(own)
    from .memory import model_bytes

    return model_bytes(getattr(model, "model", model))


def load_whisper(name: str, device: str) -> Any:
    """Load a whisper model by name (bundled tiny.en first) or by checkpoint path."""
    import torch
    import whisper

    from .bundled import bundled_checkpoint

    target = name
    if name == "tiny.en" and (ckpt := bundled_checkpoint()) is not None:
        target = str(ckpt)
    elif (path := model_path(name)) is not None:
        target = str(path)
    elif name not in whisper.available_models():
        raise ModelLoadError(
            f"--model {name}: not a whisper model name ({', '.join(whisper.available_models())})"
            " or an existing checkpoint file"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = whisper.load_model(target, device=device)
        if target != name:
            _set_bundled_alignment_heads(model)
        return model
    except __import__("pickle").UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe pickle"
        raise ModelLoadError(
            f"{target}: refused: not a plain weights checkpoint (weights_only load: {first})"
        ) from None
    except (OSError, __import__("urllib.error").error.URLError) as exc:
        if Path(target).exists():
            raise ModelLoadError(f"{target}: cannot read checkpoint: {exc}") from None
        raise ModelLoadError(
            f"cannot download whisper model {name} (no network?): give a checkpoint path "
            "with --model, or put the file in ~/.cache/whisper"
        ) from None
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise ModelLoadError(f"{target}: not a whisper checkpoint ({type(exc).__name__})") from None


def _set_bundled_alignment_heads(model: Any) -> None:
    """Word timings use cross-attention heads; the bundled config names tiny.en's."""
    import json

    import torch

    from .bundled import bundled_model_dir

    folder = bundled_model_dir()
    try:
        heads = json.loads((folder / "config.json").read_text())["alignment_heads"]  # type: ignore[operator]
    except (OSError, KeyError, TypeError, ValueError):
        return
    mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)


def transcribe(
    model: Any,
    audio: np.ndarray,
    options: TranscribeOptions,
    *,
    resume: Checkpoint | None = None,
    on_window: WindowHook | None = None,
) -> Transcript:
    """Run whisper over `audio`, calling `on_window` before each 30 s window.

    If the hook raises, the stage stops with `TranscriptionStopped` holding the checkpoint
    (the segments before that window and its start), so nothing finished is lost.
    """
    import torch
    import whisper
    from whisper.decoding import decode as whisper_decode

    total = len(audio) / SAMPLE_RATE
    start_at = resume.seek if resume else 0.0
    kwargs = options.whisper_kwargs()
    if resume and start_at > 0:
        kwargs["clip_timestamps"] = [start_at]
        if options.condition_on_previous_text and resume.prompt:
            kwargs["initial_prompt"] = resume.prompt
    previous = resume.segments if resume else ()
    windows = 0
    last = Checkpoint(start_at, previous, resume.prompt if resume else "")

    def hooked_decode(mel: Any, decode_options: Any) -> Any:
        nonlocal windows, last
        checkpoint = _checkpoint_from_loop(previous, last)
        new_window = windows == 0 or checkpoint.seek != last.seek
        last = checkpoint
        if new_window:  # temperature fallback decodes the same window again: not a new one
            windows += 1
            faults.maybe_fail("transcribe")
        announce(checkpoint, total, on_window)  # every decode, fallbacks too, is a safe point
        return whisper_decode(model, mel, decode_options)

    model.decode = hooked_decode
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # fp16-on-CPU and triton notices are not news
            result = whisper.transcribe(model, audio, **kwargs)
    finally:
        del model.decode
    segments = previous + tuple(
        Segment(
            start=float(s["start"]),
            end=float(s["end"]),
            text=s["text"].strip(),
            no_speech_prob=float(s.get("no_speech_prob", 0.0)),
            avg_logprob=float(s.get("avg_logprob", 0.0)),
        )
        for s in result["segments"]
    )
    return Transcript(
        segments=_drop_invented(segments, options), language=result.get("language"), windows=windows
    )


def _checkpoint_from_loop(previous: tuple[Segment, ...], fallback: Checkpoint) -> Checkpoint:
    """Read the finished segments and seek offset from whisper's transcribe loop frame."""
    frame = sys._getframe(2)
    while frame is not None and not (
        frame.f_code.co_name == "transcribe" and "all_segments" in frame.f_locals
    ):
        frame = frame.f_back
    if frame is None:
        return fallback
    loc = frame.f_locals
    done = tuple(
        Segment(
            float(s["start"]),
            float(s["end"]),
            s["text"].strip(),
            float(s.get("no_speech_prob", 0.0)),
            float(s.get("avg_logprob", 0.0)),
        )
        for s in loc["all_segments"]
    )
    prompt = ""
    tokenizer, tokens = loc.get("tokenizer"), loc.get("all_tokens")
    if tokenizer is not None and tokens is not None:
        since = loc.get("prompt_reset_since", 0)
        prompt = tokenizer.decode([t for t in tokens[since:] if t < tokenizer.eot]).strip()
    return Checkpoint(seek=loc["seek"] / FRAMES_PER_SECOND, segments=previous + done, prompt=prompt)


def _drop_invented(
    segments: tuple[Segment, ...], options: TranscribeOptions
) -> tuple[Segment, ...]:
    """Drop what whisper invents on silence, noise and tones: empty or punctuation-only
    text, segments it was itself unsure were speech (high no-speech and low log-probability),
    and segments whose average log-probability is under twice the fallback threshold."""
    kept = []
    for s in segments:
        if not s.text or _PUNCTUATION_ONLY.match(s.text) or s.end <= s.start:
            continue
        if s.no_speech_prob > options.no_speech_threshold and (
            s.avg_logprob < options.logprob_threshold
        ):
            continue
        # Still far below whisper's own quality bar after every temperature fallback: on a
        # tone or music this is where single invented words ("probably") come from.
        if s.avg_logprob < 2 * options.logprob_threshold:
            continue
        kept.append(s)
    return tuple(kept)


def realtime_speed(audio_seconds: float, started: float) -> float | None:
    elapsed = time.perf_counter() - started
    return audio_seconds / elapsed if elapsed > 0 else None
