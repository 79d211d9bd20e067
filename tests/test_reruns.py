"""Running the same files again: what the latest command asks for, from the right content.

One file per user-visible feature (pueue's habit): here `subq run` given files it has seen
before, with other outputs asked for, outputs deleted, or other content at the same path.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from conftest import wait_for
from subq.engine.events import LogEmitted
from subq.engine.headless import run_batch
from subq.engine.jobs import JobState
from subq.engine.settings import Settings
from test_control import paused_mid_file, states
from test_pipeline import srt_text


def run(paths: list[Path], state: Path, **settings: object) -> str:
    out = io.StringIO()
    code = run_batch(
        [str(p) for p in paths], Settings(**settings), state=state, events=None, out=out
    )
    assert code == 0, out.getvalue()
    return out.getvalue()


def test_output_dir_of_the_latest_command_wins_and_reuses_the_transcript(clips, tmp_path):
    state, talk = tmp_path / "q.db", clips["talk.mp4"]
    run([talk], state)
    beside = talk.with_suffix(".srt")
    first = beside.read_text(encoding="utf-8")
    subs = tmp_path / "subs"
    printed = run([talk], state, output_dir=str(subs), formats=("srt", "vtt"))
    assert "reusing the stored transcript" in printed  # written from it, not transcribed
    assert "Loaded" not in printed
    assert (subs / "talk.srt").read_text(encoding="utf-8") == first
    assert (subs / "talk.vtt").exists()
    assert beside.read_text(encoding="utf-8") == first  # what was written earlier stays
    printed = run([talk], state, output_dir=str(subs), formats=("srt", "vtt"))
    assert "already done" in printed


def test_force_transcribes_again_into_the_new_folder(clips, tmp_path):
    state, talk = tmp_path / "q.db", clips["talk.mp4"]
    run([talk], state)
    printed = run([talk], state, output_dir=str(tmp_path / "subs"), force=True)
    assert "reusing the stored transcript" not in printed
    assert "transcribe" in printed
    assert (tmp_path / "subs" / "talk.srt").exists()


def test_a_deleted_output_is_rewritten_from_the_stored_transcript(clips, tmp_path):
    state, talk = tmp_path / "q.db", clips["talk.mp4"]
    run([talk], state)
    srt = talk.with_suffix(".srt")
    first = srt.read_text(encoding="utf-8")
    srt.unlink()
    printed = run([talk], state)
    assert "already done" not in printed
    assert "reusing the stored transcript" in printed
    assert srt.read_text(encoding="utf-8") == first
    # an edited one is the user's now: tests/test_user_files.py


def test_other_content_at_the_same_path_is_transcribed_afresh(clips, tmp_path):
    state = tmp_path / "q.db"
    target = tmp_path / "C.mp3"
    shutil.copy(clips["long.mp3"], target)
    run([target], state)
    assert "coffee" in srt_text(target.with_suffix(".srt")).lower()
    shutil.copy(clips["podcast.mp3"], target)
    mtime = target.stat().st_mtime
    printed = run([target], state)
    assert "reusing the stored transcript" not in printed
    assert "already done" not in printed
    text = srt_text(target.with_suffix(".srt")).lower()
    assert "coffee" not in text
    assert "dinner" in text
    # Same again with the old content copied back and its date set back: content decides.
    shutil.copy(clips["long.mp3"], target)
    os.utime(target, (mtime, mtime))
    printed = run([target], state)
    assert "coffee" in srt_text(target.with_suffix(".srt")).lower()


def test_a_checkpoint_of_other_content_is_dropped_with_a_log_line(make_engine, clips, tmp_path):
    target = tmp_path / "C.mp3"
    shutil.copy(clips["long.mp3"], target)
    engine = paused_mid_file(make_engine, target)
    assert engine.jobs()[0].resume_from > 0
    shutil.copy(clips["podcast.mp3"], target)
    engine.resume()
    assert wait_for(lambda: states(engine) == [JobState.DONE], 120)
    logs = [e.message for e in engine.events if isinstance(e, LogEmitted)]
    assert any("belongs to another version of this file" in m for m in logs), logs
    text = srt_text(target.with_suffix(".srt")).lower()
    assert "dinner" in text and "coffee" not in text
