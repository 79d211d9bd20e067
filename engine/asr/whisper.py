"""The openai-whisper backend: loading a model (bundled tiny.en, a name, or a checkpoint
file, read with torch's weights-only loader) and transcribing with our copy of the
library's loop (whisper_loop.py, which says why a copy).
"""

from __future__ import annotations

import pickle
import re
import urllib.error
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import faults
from ..packaged import packaged_fix
from .base import (
    Audio,
    Checkpoint,
    ModelLoadError,
    TranscribeOptions,
    Transcript,
    WindowHook,
    model_path,
)

if TYPE_CHECKING:
    from whisper.model import Whisper


def load_whisper(name: str, device: str) -> Whisper:
    """Load a whisper model by name (bundled tiny.en first) or by checkpoint path."""
    import torch
    import whisper

    from ..bundled import converted_checkpoint
    from ..packaged import packaged_model_dir

    target, folder = name, packaged_model_dir(name)  # tiny.en, base: no download
    path = model_path(name)
    if folder is None and path is not None and path.name == "model.bin":
        folder = path.parent
    elif folder is None and path is not None and (path / "model.bin").is_file():
        folder = path  # a CTranslate2 folder (a faster-whisper model): converted once
    if folder is not None:
        label = "bundled-whisper" if name == "tiny.en" else f"whisper-{folder.name}"
        target = str(converted_checkpoint(folder, label))
    elif path is not None:
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
        if folder is not None:
            _set_alignment_heads(model, folder)
        return model
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe pickle"
        raise ModelLoadError(
            f"{target}: refused: not a plain weights checkpoint (weights_only load: {first})"
        ) from None
    except (OSError, urllib.error.URLError) as exc:
        if Path(target).exists():
            raise ModelLoadError(f"{target}: cannot read checkpoint: {exc}") from None
        fix = packaged_fix(name) or (
            "give a checkpoint path with --model, or put the file in ~/.cache/whisper"
        )
        raise ModelLoadError(f"cannot download whisper model {name} (no network?): {fix}") from None
    except (KeyError, TypeError, ValueError, EOFError) as exc:  # EOFError: an empty or cut file
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


def _set_bundled_alignment_heads(model: Whisper) -> None:
    """The bundled tiny.en's alignment heads (tests load its checkpoint by hand)."""
    from ..bundled import bundled_model_dir

    if (folder := bundled_model_dir()) is not None:
        _set_alignment_heads(model, folder)


def _set_alignment_heads(model: Whisper, folder: Path) -> None:
    """Word timings use cross-attention heads; a CTranslate2 folder's config names them
    (a converted checkpoint keeps whisper's default of every head in the top half)."""
    import json

    import torch

    try:
        heads = json.loads((folder / "config.json").read_text())["alignment_heads"]
    except (OSError, KeyError, TypeError, ValueError):
        return
    mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)


def transcribe(
    model: Whisper,
    audio: np.ndarray | Audio,
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
