"""A file whose probe crashes or hangs the reader fails alone, in one line.

Probing runs in a reader child (engine/prober.py). Crashes and hangs are injected in that
child through the fault hook (`probe:KILL`, `probe:HANG`), on real processes: the real
`subq run`, the real app, a real child killed and replaced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import CLIPS, DATA, wait_for
from subq.engine import JobState, MediaError, Prober, Settings, media

CRASHED = "probing the file crashed the reader (signal 9, SIGKILL)"


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


@pytest.fixture
def prober():
    made = Prober()
    yield made
    made.close()


@pytest.fixture
def trio(tmp_path: Path) -> list[Path]:
    """Three good clips; the middle one's name arms the `crashme`/`hangme` faults."""
    folder = tmp_path / "in"
    folder.mkdir()
    return [
        Path(shutil.copy(DATA / "podcast.mp3", folder / "first.mp3")),
        Path(shutil.copy(DATA / "talk.mp4", folder / "crashme hangme.mp4")),
        Path(shutil.copy(DATA / "lecture.mkv", folder / "last.mkv")),
    ]


def test_the_reader_child_answers_as_an_in_process_probe(prober, tmp_path):
    for name in (*CLIPS, "noaudio.mp4", "missing.mp4"):
        path = DATA / name
        try:
            expected: object = media.probe(path)
        except MediaError as exc:
            expected = str(exc)
        try:
            got: object = prober.probe(path)
        except MediaError as exc:
            got = str(exc)
        assert got == expected, name
    odd = Path(shutil.copy(DATA / "podcast.mp3", tmp_path / "new\nline \udcff.mp3"))
    assert prober.probe(odd) == media.probe(odd)  # any name the file system allows
    pid = prober.pid
    assert pid is not None
    prober.close()
    assert not running(pid) and prober.pid is None


def subq_run(paths: list[Path], state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "--state", str(state), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ("probe:KILL::crashme", CRASHED),
        ("probe:HANG::hangme", "probing the file hung (no answer in 2 s); reader stopped"),
    ],
)
def test_subq_run_fails_the_file_that_breaks_the_probe_and_finishes_the_rest(
    trio, tmp_path, fault, cause
):
    started = time.monotonic()
    proc = subq_run(trio, tmp_path / "s.db", SUBQ_FAULTS=fault, SUBQ_PROBE_TIMEOUT="2")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {trio[1]}: {cause}"], output
    for good in (trio[0], trio[2]):
        assert good.with_suffix(".srt").read_text(encoding="utf-8").strip(), output
    assert not trio[1].with_suffix(".srt").exists()
    assert time.monotonic() - started < 60


def test_a_crashed_reader_is_replaced_and_the_next_file_probes_fine(prober, trio, monkeypatch):
    monkeypatch.setenv("SUBQ_FAULTS", "probe:KILL::crashme")
    assert prober.probe(trio[0]).duration
    first = prober.pid
    assert first is not None
    with pytest.raises(MediaError) as crashed:
        prober.probe(trio[1])
    assert str(crashed.value) == f"{trio[1]}: {CRASHED}"
    assert not running(first)
    assert prober.probe(trio[2]) == media.probe(trio[2])
    assert prober.pid not in (None, first)


def test_a_hung_reader_is_killed_after_the_timeout(prober, trio, monkeypatch):
    monkeypatch.setenv("SUBQ_FAULTS", "probe:HANG::hangme")
    prober.probe(trio[0])
    hung = prober.pid
    assert hung is not None
    started = time.monotonic()
    with pytest.raises(MediaError, match=r"hung \(no answer in 0.5 s\)"):
        prober.probe(trio[1], timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert not running(hung)
    assert prober.probe(trio[2]).duration


def test_threads_share_one_reader_and_a_crash_costs_only_its_file(prober, trio, monkeypatch):
    """The app's duration thread and the engine's lanes probe through one Prober at once."""
    monkeypatch.setenv("SUBQ_FAULTS", "probe:KILL::crashme")
    results: dict[tuple[int, int], object] = {}

    def probe_all(n: int) -> None:
        for i, path in enumerate(trio * 2):
            try:
                results[n, i] = prober.probe(path).duration
            except MediaError as exc:
                results[n, i] = str(exc)

    threads = [threading.Thread(target=probe_all, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 3 * 6
    for (_, i), got in results.items():
        if i % 3 == 1:
            assert got == f"{trio[1]}: {CRASHED}"
        else:
            assert isinstance(got, float) and got > 0


CHILD_SCRIPT = """
import os, sys, threading, time
from subq.engine import Prober
prober = Prober()
prober.probe(sys.argv[1])
print(prober.pid, flush=True)
if sys.argv[2] == "hard":
    threading.Thread(target=prober.probe, args=(sys.argv[3],), daemon=True).start()
    time.sleep(0.5)  # the reader is stuck in the file now
    os._exit(0)
"""


@pytest.mark.parametrize("how", ["normal", "hard"])
def test_no_reader_outlives_subq(trio, how):
    """A normal exit ends the reader at once; a hard exit (kill -9, os._exit) while it is
    stuck in a file ends it within its watchdog's second."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, str(trio[0]), how, str(trio[1])],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SUBQ_FAULTS": "probe:HANG::hangme"},
    )
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[0])
    assert wait_for(lambda: not running(pid), timeout=5), f"reader {pid} left behind"


def test_the_app_survives_files_that_crash_or_hang_the_probe(make_engine, trio, monkeypatch):
    """The app's duration column probes queued files itself: a crash or a hang there leaves
    those durations blank and the app running."""
    import asyncio

    from subq.tui.app import SubqApp

    monkeypatch.setenv("SUBQ_FAULTS", "probe:KILL::crashme,probe:HANG::hangme")
    monkeypatch.setenv("SUBQ_PROBE_TIMEOUT", "2")
    folder = trio[0].parent
    crash = Path(shutil.copy(DATA / "talk.mp4", folder / "crashme.mp4"))
    hang = Path(shutil.copy(DATA / "talk.mp4", folder / "hangme.mp4"))
    paths = [trio[0], crash, hang, trio[2]]
    engine = make_engine(Settings(keep_alive=-1), paused=True, sample_memory=False)
    engine.start()

    async def run() -> dict[str, float | None]:
        app = SubqApp(engine, start_paths=[str(p) for p in paths])
        async with app.run_test(size=(100, 30)) as pilot:
            deadline = time.monotonic() + 30
            while len(app.main.table.probed) < 4 and time.monotonic() < deadline:
                await pilot.pause(0.05)
            by_id = {j.id: Path(j.path).name for j in engine.jobs()}
            assert app.is_running
            return {by_id[i]: d for i, d in app.main.table.probed.items()}

    probed = asyncio.run(run())
    assert probed["crashme.mp4"] is None and probed["hangme.mp4"] is None, probed
    assert probed["first.mp3"] and probed["last.mkv"], probed
    assert all(j.state == JobState.QUEUED for j in engine.jobs())  # paused: the engine ran none
