"""Outputs never collide and never escape their folder; the demo works offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import DATA
from subq.engine.jobs import JobState
from subq.engine.options import WriteOptions
from subq.engine.outputs import choose_base
from subq.engine.settings import Settings


def test_same_stem_in_one_folder_gets_distinct_outputs(make_engine, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "talk.mp4", folder / "talk.mp4")
    shutil.copy(DATA / "podcast.mp3", folder / "talk.mp3")
    engine = make_engine(whole_queue=False)
    engine.start()
    engine.add([str(folder)])
    assert engine.wait_idle(200)
    jobs = engine.jobs()
    assert [j.state for j in jobs] == [JobState.DONE, JobState.DONE]
    outputs = sorted(Path(j.outputs[0]).name for j in jobs)
    assert outputs == ["talk.mp3.srt", "talk.srt"] or outputs == ["talk.mp4.srt", "talk.srt"]
    texts = {Path(j.outputs[0]).read_text(encoding="utf-8") for j in jobs}
    assert len(texts) == 2  # neither overwrote the other
    assert any("renamed" in getattr(e, "message", "") for e in engine.events)


def test_same_name_from_two_folders_into_one_output_dir(make_engine, tmp_path):
    for sub, clip in (("a", "talk.mp4"), ("b", "lecture.mkv")):
        (tmp_path / sub).mkdir()
        shutil.copy(DATA / clip, tmp_path / sub / "talk.mp4")
    out = tmp_path / "subs"
    engine = make_engine(Settings(keep_alive=-1, output_dir=str(out)), whole_queue=False)
    engine.start()
    engine.add([str(tmp_path / "a" / "talk.mp4"), str(tmp_path / "b" / "talk.mp4")])
    assert engine.wait_idle(200)
    written = sorted(str(Path(j.outputs[0]).relative_to(out)) for j in engine.jobs())
    assert written == ["talk.mp4.srt", "talk.srt"]


def test_output_paths_stay_inside_the_output_folder(tmp_path):
    settings = Settings(output_dir=str(tmp_path / "out"))
    for name in ("..", "-x.mp4", "concat:x.mp4", "a;b.mp4", "new\nline.mp4", "ü.mp4"):
        base, _note = choose_base(Path("/videos") / name, WriteOptions.of(settings), taken=())
        assert Path(base).parent == tmp_path / "out", name


def test_demo_runs_offline_from_the_packaged_clip():
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "demo"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--> " in proc.stdout and "demo finished in" in proc.stdout
    srt = proc.stdout.split("--- demo.srt ---")[1].split("--- reference ---")[0]
    reference = (Path(__file__).parents[1] / "engine" / "data" / "demo.txt").read_text()
    from test_pipeline import wer

    words = " ".join(
        line for line in srt.splitlines() if line and "-->" not in line and not line.isdigit()
    )
    assert wer(reference, words) <= 0.15
