"""Transcription: the one place a backend is chosen, loaded and run.

Every backend decodes window by window (30 s windows, or in batched mode batches of VAD
chunks) and calls `on_window` at the start of each with a checkpoint of everything before
it; if the hook raises, the stage stops with `TranscriptionStopped` carrying that
checkpoint, and passing it back as `resume` finishes the file exactly as one clean run
would. The rooms:

- base.py: the types every backend shares (`Segment`, `Transcript`, `Checkpoint`, the
  `Recognizer` protocol, the `Audio` a loop reads forward) and the safe point;
- whisper.py + whisper_loop.py: openai-whisper, with our copy of its loop;
- faster_whisper.py + faster_whisper_loop.py: faster-whisper (CTranslate2), likewise;
- batched.py, whisper_batched.py: batched long-form decoding of VAD chunks, one per library;
- vad.py (Silero VAD, streamed) and word_cues.py (a chunk's words as cues), which both
  batched modes use.

`audio` is a `media.AudioSource` (decoded forward as it is read: a long file is never held
whole) or a numpy array of 16 kHz mono float32 samples.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    CHECKPOINT_FORMAT,
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    SAMPLE_RATE,
    WINDOW_SECONDS,
    ArrayAudio,
    Audio,
    Checkpoint,
    ModelLoadError,
    Recognizer,
    Segment,
    SegmentHook,
    TranscribeOptions,
    Transcript,
    TranscriptionStopped,
    WindowHook,
    Word,
    announce,
    drop_invented,
    load_checkpoint,
    model_path,
)
from .whisper import _set_bundled_alignment_heads, load_whisper, transcribe

__all__ = [
    "BACKENDS",
    "CHECKPOINT_FORMAT",
    "FASTER_WHISPER",
    "FRAMES_PER_SECOND",
    "HOP_LENGTH",
    "SAMPLE_RATE",
    "WHISPER",
    "WINDOW_SECONDS",
    "ArrayAudio",
    "Audio",
    "Checkpoint",
    "ModelLoadError",
    "Recognizer",
    "Segment",
    "SegmentHook",
    "TranscribeOptions",
    "Transcript",
    "TranscriptionStopped",
    "WindowHook",
    "Word",
    "_set_bundled_alignment_heads",
    "announce",
    "drop_invented",
    "footprint",
    "load_backend",
    "load_checkpoint",
    "load_whisper",
    "model_path",
    "resolve_backend",
    "run_backend",
    "transcribe",
]

FASTER_WHISPER = "faster-whisper"
WHISPER = "whisper"

Run = Callable[..., Transcript]


@dataclass(frozen=True)
class Library:
    """A `Recognizer`: how one library is loaded and run, sequentially and batched."""

    load: Callable[[str, str], Any]
    sequential: Run
    batched: Run

    def transcribe(
        self,
        model: Any,
        audio: np.ndarray | Audio,
        options: TranscribeOptions,
        *,
        resume: Checkpoint | None = None,
        on_window: WindowHook | None = None,
        on_segment: SegmentHook | None = None,
    ) -> Transcript:
        run = self.batched if options.batch_size > 0 else self.sequential
        return run(model, audio, options, resume=resume, on_window=on_window, on_segment=on_segment)

    def footprint(self, model: Any) -> int:
        """Bytes the loaded model holds (CTranslate2 models report their own)."""
        own = getattr(model, "footprint_bytes", None)
        if own is not None:
            return int(own)
        from ..memory import model_bytes

        return model_bytes(getattr(model, "model", model))

    def unload(self, model: Any) -> None:
        """Free what can be freed now (CTranslate2's weights); torch's go with the last
        reference, which the caller drops."""
        close = getattr(model, "close", None)
        if close is not None:
            close()


def _load_fw(name: str, device: str) -> Any:
    from .faster_whisper import load_ct2

    return load_ct2(name, device)


def _fw(model: Any, audio: Any, options: TranscribeOptions, **hooks: Any) -> Transcript:
    from .faster_whisper import transcribe_ct2

    return transcribe_ct2(model, audio, options, **hooks)


def _fw_batched(model: Any, audio: Any, options: TranscribeOptions, **hooks: Any) -> Transcript:
    from .batched import transcribe_batched

    return transcribe_batched(model, audio, options, **hooks)


def _whisper(model: Any, audio: Any, options: TranscribeOptions, **hooks: Any) -> Transcript:
    hooks.pop("on_segment", None)  # openai-whisper reports once per window
    return transcribe(model, audio, options, **hooks)


def _whisper_batched(
    model: Any, audio: Any, options: TranscribeOptions, **hooks: Any
) -> Transcript:
    from .whisper_batched import transcribe_whisper_batched

    return transcribe_whisper_batched(model, audio, options, **hooks)


# The one table of backends; each library is imported only when its backend is used.
BACKENDS: dict[str, Recognizer] = {
    FASTER_WHISPER: Library(_load_fw, _fw, _fw_batched),
    WHISPER: Library(load_whisper, _whisper, _whisper_batched),
}


def load_backend(backend: str, name: str, device: str) -> Any:
    """Load a recogniser for `backend` (a resolved name, not "auto"); the object it returns
    is what `run_backend` and `footprint` take."""
    return BACKENDS[backend].load(name, device)


def run_backend(
    backend: str,
    model: Any,
    audio: np.ndarray | Audio,
    options: TranscribeOptions,
    *,
    resume: Checkpoint | None = None,
    on_window: WindowHook | None = None,
    on_segment: SegmentHook | None = None,
) -> Transcript:
    """Transcribe with `backend`, batched when `options.batch_size` > 0. `on_window` runs at
    every safe point (and may stop the stage); `on_segment` reports progress between them
    where the backend yields segments as it goes (faster-whisper, and both batched modes)."""
    return BACKENDS[backend].transcribe(
        model, audio, options, resume=resume, on_window=on_window, on_segment=on_segment
    )


def footprint(model: Any) -> int:
    """Bytes the loaded recogniser holds (either backend's model)."""
    return BACKENDS[FASTER_WHISPER].footprint(model)


def resolve_backend(
    backend: str, device: str, model: str = "tiny.en", *, batched: bool = False
) -> str:
    """The backend "auto" stands for on `device`, as docs/benchmarks.md measured it.

    On the CPU faster-whisper (int8) ran a whole batch in about a third of openai-whisper's
    time at the same WER; on CUDA nothing has been measured yet, so the reference backend
    stays. The model decides where it can only load in one: a whisper checkpoint file goes
    to openai-whisper, a CTranslate2 folder to faster-whisper. Batched decoding is in both;
    "auto" keeps faster-whisper's where it is installed (measured on the CPU; no GPU figure
    yet says otherwise). Without faster-whisper or CTranslate2 (the CUDA 13 GPU image has
    neither), "auto" is openai-whisper.
    """
    if backend != "auto":
        return backend
    has_ct2 = all(importlib.util.find_spec(m) for m in ("faster_whisper", "ctranslate2"))
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


def _whisper_cache(name: str) -> Path:
    """Where openai-whisper keeps a downloaded model (its own rule in whisper.load_model)."""
    import os

    root = os.getenv("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    stored = WHISPER_FILE_NAMES.get(name, name)
    return Path(root) / "whisper" / f"{stored}.pt"


# openai-whisper saves these names under their full ones (its _MODELS URLs); the table saves
# importing whisper (and torch) just to ask.
WHISPER_FILE_NAMES = {"large": "large-v3", "turbo": "large-v3-turbo"}
