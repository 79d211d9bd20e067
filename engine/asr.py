"""Transcription: choosing and loading a backend, and running it stoppably.

Every backend decodes window by window (30 s windows, or in batched mode batches of VAD
chunks) and calls `on_window` at the start of each with a checkpoint of everything before
it; if the hook raises, the stage stops with `TranscriptionStopped` carrying that
checkpoint, and passing it back as `resume` finishes the file exactly as one clean run
would. The loops are our own copies of the libraries' (whisper_loop.py, ct2_loop.py; why,
in their docstrings); the shared types live in asr_types.py and are re-exported here.
"""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import faults
from .asr_types import (  # noqa: F401 - the engine's names for these, re-exported
    CHECKPOINT_FORMAT,
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    SAMPLE_RATE,
    WINDOW_SECONDS,
    Checkpoint,
    ModelLoadError,
    Segment,
    SegmentHook,
    TranscribeOptions,
    Transcript,
    TranscriptionStopped,
    WindowHook,
    announce,
    drop_invented,
    load_checkpoint,
    model_path,
)

_drop_invented = drop_invented  # the older private name

FASTER_WHISPER = "faster-whisper"
WHISPER = "whisper"


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
    if backend == WHISPER and options.batch_size > 0:
        from .asr_whisper_batched import transcribe_whisper_batched

        return transcribe_whisper_batched(
            model, audio, options, resume=resume, on_window=on_window, on_segment=on_segment
        )
    if backend == FASTER_WHISPER and options.batch_size > 0:
        from .asr_batched import transcribe_batched

        return transcribe_batched(
            model, audio, options, resume=resume, on_window=on_window, on_segment=on_segment
        )
    if backend == FASTER_WHISPER:
        from .asr_ct2 import transcribe_ct2

        return transcribe_ct2(
            model, audio, options, resume=resume, on_window=on_window, on_segment=on_segment
        )
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
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{target}: not a whisper checkpoint ({type(exc).__name__})") from None
    except RuntimeError as exc:
        # Only what torch says about the file itself is the checkpoint's fault; a device or
        # CUDA error (or an OOM) is reported as what it is, never blamed on the checkpoint.
        if isinstance(exc, torch.OutOfMemoryError) or not _CHECKPOINT_FAULTS.search(str(exc)):
            raise
        raise ModelLoadError(f"{target}: not a whisper checkpoint ({type(exc).__name__})") from None


_CHECKPOINT_FAULTS = re.compile(
    r"state_dict|PytorchStreamReader|zip archive|invalid load key|size mismatch|"
    r"unexpected EOF|magic number",
    re.IGNORECASE,
)


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
    """Run openai-whisper over `audio`, calling `on_window` before each 30 s window.

    If the hook raises, the stage stops with `TranscriptionStopped` holding the checkpoint
    (the segments before that window and all the decoder state at its start), so nothing
    finished is lost and a resume continues exactly as the clean run would have.
    """
    from .whisper_loop import transcribe_whisper

    return transcribe_whisper(
        model,
        audio,
        options,
        resume=resume,
        on_window=on_window,
        at_window=lambda: faults.maybe_fail("transcribe"),
    )


def realtime_speed(audio_seconds: float, started: float) -> float | None:
    elapsed = time.perf_counter() - started
    return audio_seconds / elapsed if elapsed > 0 else None
