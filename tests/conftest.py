"""Shared fixtures: every test runs with its own XDG dirs, so no real user file is touched.

The converted tiny.en checkpoint is cached once per test session (in a session temp dir)
and reused by every engine the tests start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

# huggingface_hub reads this once, at import: set it before any test imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"

from translation_fixture import tiny_marian  # noqa: F401

DATA = Path(__file__).parent / "data"
CLIPS = ("talk.mp4", "lecture.mkv", "podcast.mp3")
NON_SPEECH = ("silence", "white noise", "tone")


def non_speech(kind: str, seconds: int = 12, rate: int = 16000) -> np.ndarray:
    """Audio with no speech in it, of the kinds whisper is known to invent text on."""
    rng = np.random.default_rng(0)
    t = np.arange(rate * seconds) / rate
    return {
        "silence": np.zeros_like(t),
        "white noise": rng.normal(0, 0.1, t.size),
        "tone": 0.3 * np.sin(2 * np.pi * 440 * t),
    }[kind].astype(np.float32)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def isolated_dirs(
    tmp_path_factory: pytest.TempPathFactory, session_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("xdg")
    for name in ("CONFIG", "DATA", "STATE"):
        folder = home / name.lower()
        folder.mkdir()
        monkeypatch.setenv(f"XDG_{name}_HOME", str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(session_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SUBQ_FAULTS", raising=False)
    monkeypatch.delenv("SUBQ_FAKE_FREE_BYTES", raising=False)
    from subq.engine import faults

    faults.reset()


@pytest.fixture
def clips(tmp_path: Path) -> dict[str, Path]:
    """Fresh copies of the committed clips, so outputs land in the test's own folder."""
    folder = tmp_path / "media"
    folder.mkdir()
    out = {}
    for name in (*CLIPS, "long.mp3", "noaudio.mp4"):
        out[name] = Path(shutil.copy(DATA / name, folder / name))
    return out


@pytest.fixture(scope="session")
def references() -> dict[str, str]:
    return json.loads((DATA / "references.json").read_text(encoding="utf-8"))


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start real engines on a state file in tmp_path; shut them all down afterwards."""
    from subq.engine.runner import Engine
    from subq.engine.settings import Settings

    engines = []

    def make(settings: Settings | None = None, *, state: Path | None = None, **kw: object):
        engine = Engine(
            settings or Settings(keep_alive=-1), state or tmp_path / "state.sqlite3", **kw
        )
        events: list = []
        engine.subscribe(events.append)
        engine.events = events  # type: ignore[attr-defined]
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.shutdown(timeout=30)
        engine.store.close()


def subq_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a `subq` child process: isolated dirs, shared model cache."""
    env = dict(os.environ)
    env.update(extra)
    return env


@pytest.fixture
def state(tmp_path: Path):
    """A state file whose engine service, if any, is stopped after the test."""
    from subq.engine.client import EngineUnavailable, connect_engine

    path = tmp_path / "q.db"
    yield path
    with contextlib.suppress(EngineUnavailable):
        connect_engine(path).stop_engine(timeout=30)


@pytest.fixture(params=["in-process", "service"])
def app_engine(request: pytest.FixtureRequest, make_engine, tmp_path: Path):
    """An engine as the app drives it: in this process, or the engine service attached to
    over its socket (issue 26). Returns make(settings=None, paused=False, sample_memory=False),
    started (the service always samples memory: it feeds every client's panel)."""
    from subq.engine.client import attach_engine
    from subq.engine.settings import Settings

    clients = []

    def make(
        settings: Settings | None = None, *, paused: bool = False, sample_memory: bool = False
    ):
        settings = settings or Settings(keep_alive=-1)
        if request.param == "in-process":
            engine = make_engine(settings, paused=paused, sample_memory=sample_memory)
        else:
            engine = attach_engine(tmp_path / "service.db", settings, paused=paused)
            clients.append(engine)
        engine.start()
        return engine

    yield make
    for client in clients:
        client.stop_engine(timeout=30)


@pytest.fixture(scope="session", autouse=True)
def no_engine_service_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory):
    """Engine services started by tests run in sessions of their own; whatever a failed
    test left running under this session's temporary folder is ended at the end."""
    yield
    import psutil

    base = str(tmp_path_factory.getbasetemp())
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "subq.engine.service" in cmdline and any(base in arg for arg in cmdline):
            with contextlib.suppress(psutil.Error):
                proc.terminate()
