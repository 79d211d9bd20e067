"""SRT/VTT text, cue shaping and atomic writes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from subq.engine import faults
from subq.engine.subtitles import (
    MAX_DURATION,
    MAX_LINE,
    Cue,
    balanced_lines,
    format_srt,
    format_vtt,
    make_cues,
    remove_stale_temps,
    write_atomic,
)


def test_srt_timestamps_past_one_hour_and_numbering():
    text = format_srt([Cue(3723.456, 3725.0, "late"), Cue(0.0, 1.5, "early")])
    assert "1\n01:02:03,456 --> 01:02:05,000\nlate\n" in text
    assert "2\n00:00:00,000 --> 00:00:01,500\nearly\n" in text


def test_vtt_header_dot_timestamps_and_escaping():
    text = format_vtt([Cue(0.0, 2.0, "a <b> & c --> d")])
    assert text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.000\n")
    assert "a &lt;b&gt; &amp; c -&gt; d" in text


def test_empty_transcript_writes_valid_empty_files():
    assert format_srt([]) == ""
    assert format_vtt([]) == "WEBVTT\n\n"


def test_unicode_and_no_bom(tmp_path):
    path = tmp_path / "ü ñ 字幕.srt"
    write_atomic(path, format_srt([Cue(0, 1, "Grüße, 字幕 ✓")]))
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert "Grüße, 字幕 ✓" in raw.decode("utf-8")


def test_blank_lines_inside_text_cannot_end_a_cue():
    text = format_srt([Cue(0, 1, "one\n\ntwo")])
    assert "one two" in text


def test_long_segments_split_into_readable_cues():
    words = " ".join(f"word{i}" for i in range(60))
    cues = make_cues([(0.0, 20.0, words), (20.0, 21.0, "short"), (21.0, 21.0, "zero")])
    for cue in cues:
        lines = balanced_lines(cue.text).splitlines()
        assert len(lines) <= 2 and all(len(line) <= MAX_LINE for line in lines)
        assert cue.end - cue.start <= MAX_DURATION + 1e-6
        assert cue.end > cue.start
    for a, b in itertools.pairwise(cues):
        assert a.end <= b.start
    assert " ".join(c.text for c in cues[:-2]) == words


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "talk.srt"
    path.write_text("old", encoding="utf-8")
    monkeypatch.setenv("SUBQ_FAULTS", "write:ENOSPC")
    faults.reset()
    with pytest.raises(OSError) as err:
        write_atomic(path, "new")
    assert err.value.errno == 28
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["talk.srt"]


WRITER = """
import sys
from pathlib import Path
from subq.engine.subtitles import write_atomic
path = Path(sys.argv[1])
n = 0
print("ready", flush=True)
while True:
    n += 1
    write_atomic(path, (f"version {n}\\n" * 200_000) + "end\\n")
"""


def test_killed_writer_leaves_old_or_new_file_never_partial(tmp_path):
    path = tmp_path / "out.srt"
    write_atomic(path, ("version 0\n" * 200_000) + "end\n")
    for delay in (0.05, 0.13, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        text = path.read_text(encoding="utf-8")
        assert text.endswith("end\n")
        versions = {line for line in text.splitlines() if line != "end"}
        assert len(versions) == 1  # one whole version, never a mix or a cut
        removed = remove_stale_temps(tmp_path)
        assert removed <= 1
        assert [p.name for p in tmp_path.iterdir()] == ["out.srt"]


def test_stale_temp_files_of_live_writers_are_left_alone(tmp_path):
    mine = tmp_path / f".subq-{os.getpid()}-abc.tmp"
    dead = tmp_path / ".subq-999999999-abc.tmp"
    other_live = tmp_path / ".subq-1-abc.tmp"  # pid 1 is always alive
    for p in (mine, dead, other_live):
        p.write_text("x")
    assert remove_stale_temps(tmp_path) == 2
    assert [p.name for p in Path(tmp_path).iterdir()] == [other_live.name]


def test_a_temp_file_another_job_of_this_process_writes_is_not_stale(tmp_path):
    """Two jobs run at once in one process (two workers): one job's clean-up at its start
    must not take the temp file the other is writing into the same folder."""
    import os

    from subq.engine import subtitles

    tmp = tmp_path / f"{subtitles.TEMP_PREFIX}{os.getpid()}-x.tmp"
    tmp.write_text("half")
    with subtitles._temps_lock:
        subtitles._live_temps.add(str(tmp))
    try:
        assert subtitles.remove_stale_temps(tmp_path) == 0 and tmp.exists()
    finally:
        with subtitles._temps_lock:
            subtitles._live_temps.discard(str(tmp))
    assert subtitles.remove_stale_temps(tmp_path) == 1 and not tmp.exists()
