"""A person's subtitles are never overwritten without --force (issue 23): a file subq did
not write, or one edited after subq wrote it, is kept, and the job says which and why."""

from __future__ import annotations

import subprocess
import sys

from test_reruns import run

HANDMADE = "1\n00:00:00,000 --> 00:00:02,000\nMy own careful subtitle.\n\n"


def test_a_hand_made_subtitle_is_kept_when_other_formats_are_asked(clips, tmp_path):
    talk = clips["talk.mp4"]
    srt, vtt = talk.with_suffix(".srt"), talk.with_suffix(".vtt")
    srt.write_text(HANDMADE, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", "--device", "cpu", "--format", "srt,vtt",
         "--state", str(tmp_path / "q.db"), str(talk)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert srt.read_text(encoding="utf-8") == HANDMADE
    assert vtt.read_text(encoding="utf-8").startswith("WEBVTT")
    assert "talk.srt was not written by subq; kept (use --force to replace)" in proc.stdout


def test_a_hand_made_subtitle_is_kept_when_a_translation_is_asked(clips, tmp_path, tiny_marian):
    talk = clips["talk.mp4"]
    srt = talk.with_suffix(".srt")
    srt.write_text(HANDMADE, encoding="utf-8")
    printed = run(
        [talk], tmp_path / "q.db", translate_to=("de",), translation_model=str(tiny_marian)
    )
    assert srt.read_text(encoding="utf-8") == HANDMADE
    assert talk.with_suffix(".de.srt").exists()
    assert "talk.srt was not written by subq; kept" in printed


def test_an_edited_subtitle_is_kept_until_force_and_a_deleted_one_comes_back(clips, tmp_path):
    state, talk = tmp_path / "q.db", clips["talk.mp4"]
    srt = talk.with_suffix(".srt")
    run([talk], state)
    ours = srt.read_text(encoding="utf-8")
    srt.write_text(ours.replace("\n\n", "\n\n", 1) + "\n", encoding="utf-8")  # a fix by hand
    edited = srt.read_text(encoding="utf-8")
    printed = run([talk], state)
    assert "talk.srt was edited after subq wrote it; kept (use --force to replace)" in printed
    assert srt.read_text(encoding="utf-8") == edited
    printed = run([talk], state)  # kept as it is: nothing left to do
    assert "already done" in printed and srt.read_text(encoding="utf-8") == edited
    run([talk], state, force=True)
    assert srt.read_text(encoding="utf-8") == ours
    srt.unlink()
    printed = run([talk], state)
    assert "reusing the stored transcript" in printed and srt.read_text(encoding="utf-8") == ours
