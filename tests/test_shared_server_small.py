"""The small things a shared server needs (issue 23): CPU counts from what this process may
use, language codes that cannot become paths, and "clear finished" that sticks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import wait_for
from subq.engine.jobs import JobState
from subq.engine.settings import Settings, SettingsError
from subq.engine.store import Store

PRINT_CPUS = (
    "from subq.engine import memory, pool, procs; "
    "print(procs.usable_cpus(), memory.CPU_WORKERS, pool.cpu_threads(['cpu', 'cpu#2']))"
)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux affinity")
def test_cpu_counts_come_from_the_affinity_not_the_machine():
    one = subprocess.run(
        [sys.executable, "-c", PRINT_CPUS], capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
    )  # fmt: skip
    assert one.stdout.split() == ["1", "1", "1"], one.stderr
    everything = subprocess.run(
        [sys.executable, "-c", PRINT_CPUS], capture_output=True, text=True, timeout=60
    )
    usable = len(os.sched_getaffinity(0))
    assert everything.stdout.split()[:2] == [str(usable), str(min(2, usable))]


@pytest.mark.parametrize("code", ["de", "deu", "fra_Latn", "pt-BR", "zh"])
def test_language_codes_are_accepted(code):
    assert Settings(translate_to=(code,)).validate().translate_to == (code,)


@pytest.mark.parametrize("code", ["../x", "de/..", "DE", "english", "", "fr.srt"])
def test_anything_else_in_translate_to_is_one_line_error(code, tmp_path):
    with pytest.raises(SettingsError, match="not a language code"):
        Settings(translate_to=(code,)).validate()
    if not code:
        return  # the command line drops empty entries of a list
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "--state", str(tmp_path / "q.db"),
         "--translate-to", f"de,{code}", "x.mp3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not list(tmp_path.glob("*x*"))


def test_clear_finished_removes_the_rows_for_good(make_engine, clips, tmp_path):
    state = tmp_path / "q.db"
    engine = make_engine(Settings(keep_alive=-1, device="cpu"), state=state)
    engine.start()
    engine.add([str(clips["podcast.mp3"]), str(tmp_path / "missing.mp3")])
    assert wait_for(
        lambda: len(engine.jobs()) == 2 and all(j.state.finished for j in engine.jobs()), 120
    )
    assert {j.state for j in engine.jobs()} == {JobState.DONE, JobState.FAILED}
    engine.clear_finished()
    assert wait_for(lambda: engine.jobs() == [], 10)
    engine.shutdown()
    engine.store.close()
    again = Store(state)
    try:
        assert again.jobs() == []  # not hidden: gone, and a new app does not show them
    finally:
        again.close()
