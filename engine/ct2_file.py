"""CTranslate2's ``model.bin`` read with plain numpy: every variable, float16 and bfloat16
decoded, quantized ones with their scales, plus the spec's scalars (bundled.py converts
them to openai-whisper's layout)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 is decoded by hand.
_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: upper half of a float32
}
_CT2_BFLOAT16 = 5
# Binary versions < 4 store an item size instead of a dtype id.
_CT2_ITEM_SIZE_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    4: np.dtype("<f4"),
}


class _Reader:
    """Little-endian cursor over the bytes of a CTranslate2 ``model.bin``."""

    def __init__(self, data: bytes, source: Path) -> None:
        self.data = data
        self.offset = 0
        self.source = source

    def _take(self, size: int) -> int:
        start = self.offset
        if start + size > len(self.data):
            raise ValueError(
                f"{self.source}: truncated CTranslate2 model (wanted {size} bytes at "
                f"offset {start}, file has {len(self.data)})"
            )
        self.offset += size
        return start

    def unpack(self, fmt: str) -> int:
        fmt = "<" + fmt
        start = self._take(struct.calcsize(fmt))
        return struct.unpack_from(fmt, self.data, start)[0]

    def string(self) -> str:
        length = self.unpack("H")
        start = self._take(length)
        return self.data[start : start + length].split(b"\0", 1)[0].decode("utf-8")

    def array(self, dtype: np.dtype, num_bytes: int, shape: tuple[int, ...]) -> np.ndarray:
        start = self._take(num_bytes)
        if num_bytes % dtype.itemsize:
            raise ValueError(f"{self.source}: {num_bytes} bytes is not a whole number of {dtype}")
        count = num_bytes // dtype.itemsize
        if count != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{self.source}: {count} items do not fill shape {shape}")
        return np.frombuffer(self.data, dtype=dtype, count=count, offset=start).reshape(shape)


def read_ct2_model(model_bin: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Parse a CTranslate2 ``model.bin`` into numpy arrays plus header information.

    Reading the format directly avoids depending on the ``ctranslate2`` wheel, which is
    large and not needed by openai-whisper. Returns ``(variables, info)`` where
    ``variables`` maps every variable name (aliases resolved to the same array) to a
    read-only numpy array (bfloat16 is widened to float32), and ``info`` holds
    ``binary_version``, ``spec``, ``revision`` and ``aliases`` (alias -> target name).
    """
    model_bin = Path(model_bin)
    reader = _Reader(model_bin.read_bytes(), model_bin)

    version = reader.unpack("I")
    spec_name, revision = "", 1
    if version >= 2:
        spec_name = reader.string()
        revision = reader.unpack("I")

    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        rank = reader.unpack("B")
        shape = tuple(reader.unpack("I") for _ in range(rank))
        if version >= 4:
            type_id = reader.unpack("B")
            num_bytes = reader.unpack("I")
            if type_id not in _CT2_DTYPES:
                raise ValueError(f"{model_bin}: variable {name!r} has unknown dtype id {type_id}")
            array = reader.array(_CT2_DTYPES[type_id], num_bytes, shape)
            if type_id == _CT2_BFLOAT16:
                array = (array.astype(np.uint32) << 16).view(np.float32)
        else:
            item_size = reader.unpack("B")
            count = reader.unpack("I")
            if item_size not in _CT2_ITEM_SIZE_DTYPES:
                raise ValueError(f"{model_bin}: variable {name!r} has item size {item_size}")
            array = reader.array(_CT2_ITEM_SIZE_DTYPES[item_size], count * item_size, shape)
        variables[name] = array

    aliases: dict[str, str] = {}
    if version >= 3 and reader.offset < len(reader.data):
        for _ in range(reader.unpack("I")):
            alias = reader.string()
            aliases[alias] = reader.string()
    for alias, target in aliases.items():
        if target not in variables:
            raise ValueError(f"{model_bin}: alias {alias!r} points to missing {target!r}")
        variables[alias] = variables[target]

    info = {
        "binary_version": version,
        "spec": spec_name,
        "revision": revision,
        "aliases": aliases,
    }
    return variables, info
