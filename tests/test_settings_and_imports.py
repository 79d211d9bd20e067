"""Settings precedence and the engine/TUI boundary."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import time

import subq.engine
from subq.engine.settings import Settings, config_path, load_config, save_config
from subq.tui.cli import build_run_parser, settings_from


def test_flag_beats_config_beats_default():
    save_config(Settings(model="base", beam_size=5, formats=("srt", "vtt")))
    assert config_path().exists()
    args = build_run_parser().parse_args(["x.mp4", "--model", "small"])
    settings = settings_from(args)
    assert settings.model == "small"  # flag
    assert settings.beam_size == 5 and settings.formats == ("srt", "vtt")  # config
    assert settings.keep_alive == Settings().keep_alive  # default
    assert load_config() == Settings(model="base", beam_size=5, formats=("srt", "vtt"))


def test_broken_config_is_one_line_naming_the_file():
    config_path().parent.mkdir(parents=True, exist_ok=True)
    config_path().write_text("model = [unclosed")
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "x.mp4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert str(config_path()) in proc.stderr and proc.stderr.count("\n") == 1


def test_engine_never_imports_textual():
    modules = [f"subq.engine.{m.name}" for m in pkgutil.iter_modules(subq.engine.__path__)]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "assert 'textual' not in sys.modules, 'textual imported'\n"
        "print(len(sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(modules) >= 10


def test_help_is_fast_and_loads_no_heavy_modules():
    code = (
        "import sys, io, contextlib\n"
        "from subq.tui import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'textual', 'whisper') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "subq run" in proc.stdout
    assert time.perf_counter() - started < 10  # generous: shared machines are noisy


def test_cpu_run_with_the_default_backend_never_imports_torch(tmp_path):
    """On a machine with no GPU, `subq run` (auto = faster-whisper) skips torch's 1.4 s import."""
    from pathlib import Path

    from conftest import DATA
    from subq.engine.memory import GPU_DEVICE_NODES

    if any(Path(node).exists() for node in GPU_DEVICE_NODES):
        import pytest

        pytest.skip("a GPU device node exists: torch is imported to ask about it")
    code = (
        "import sys\n"
        "from subq.tui import cli\n"
        f"rc = cli.main(['run', '-q', '--state', {str(tmp_path / 's.db')!r}, '--output-dir', "
        f"{str(tmp_path)!r}, {str(DATA / 'podcast.mp3')!r}])\n"
        "print(rc, 'torch' in sys.modules, 'whisper' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["0", "False", "False"], proc.stdout + proc.stderr
    assert "healthy dinner" in (tmp_path / "podcast.srt").read_text(encoding="utf-8")


def test_auto_backend_follows_device_model_and_mode(tmp_path, monkeypatch):
    from subq.engine.asr import resolve_backend
    from subq.engine.bundled import bundled_model_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkpoint = tmp_path / "fine-tuned.pt"
    checkpoint.write_bytes(b"\0")
    assert resolve_backend("auto", "cpu") == "faster-whisper"  # the measured CPU default
    assert resolve_backend("auto", "cuda:0") == "whisper"  # no GPU figure: the reference
    assert resolve_backend("auto", "cpu", str(checkpoint)) == "whisper"
    assert resolve_backend("auto", "cuda:0", str(bundled_model_dir())) == "faster-whisper"
    assert resolve_backend("auto", "cuda:0", batched=True) == "faster-whisper"
    assert resolve_backend("auto", "cpu", "base.en") == "faster-whisper"
    cached = tmp_path / "cache" / "whisper" / "base.en.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\0")  # downloaded earlier for openai-whisper: keep using it offline
    assert resolve_backend("auto", "cpu", "base.en") == "whisper"
    (tmp_path / "cache" / "whisper" / "large-v3.pt").write_bytes(b"\0")  # how it saves "large"
    assert resolve_backend("auto", "cpu", "large") == "whisper"
    # names and files only CTranslate2 loads go to faster-whisper on any device
    assert resolve_backend("auto", "cuda", "distil-large-v3") == "faster-whisper"
    assert resolve_backend("auto", "cuda", "Systran/faster-whisper-small") == "faster-whisper"
    assert resolve_backend("auto", "cuda", str(bundled_model_dir() / "model.bin")) == (
        "faster-whisper"
    )
    # a name no path can be: the loader, not the resolver, reports it
    assert resolve_backend("auto", "cpu", "~no-such-user-xyz/model") == "faster-whisper"
    assert resolve_backend("auto", "cpu", "x" * 300) == "faster-whisper"
    assert resolve_backend("whisper", "cpu") == "whisper"
    assert resolve_backend("faster-whisper", "cuda") == "faster-whisper"
