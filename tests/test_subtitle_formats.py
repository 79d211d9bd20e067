"""Every output format, written by `subq run` and read back by parsers that are not subq's
(issue 27): `srt` (the srt package), `vtt` (webvtt-py), `ass` (pysubs2), `json` (json),
`tsv` (csv), `txt`; the transcript and its translation, with the same cues and times as
the SRT. A second run with other layout flags rewrites the files from the stored
transcript, laid out anew.

One `subq run` of long.mp3 (70 s) with a tiny translation model feeds every test.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pysubs2
import pytest
import srt
import webvtt
from conftest import DATA
from subq.engine.cue_builder import MAX_TAIL

FORMATS = ("srt", "vtt", "txt", "json", "tsv", "ass")


def subq_run(folder: Path, cache: Path, *flags: str) -> str:
    """`subq run` in a child with its own config, data and state folders under `folder`."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(cache))
    for name in ("CONFIG", "DATA", "STATE"):
        (folder / name.lower()).mkdir(exist_ok=True)
        env[f"XDG_{name}_HOME"] = str(folder / name.lower())
    env.pop("SUBQ_FAULTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", "run", str(DATA / "long.mp3"),
         "--output-dir", str(folder / "out"), "--state", str(folder / "state.db"),
         "--device", "cpu", *flags],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def written(tmp_path_factory, session_cache, tiny_marian) -> Path:
    folder = tmp_path_factory.mktemp("formats")
    subq_run(
        folder, session_cache, "--format", ",".join(FORMATS), "--karaoke",
        "--translate-to", "de", "--translation-model", str(tiny_marian),
    )  # fmt: skip
    return folder


def out(folder: Path, lang: str | None, fmt: str) -> Path:
    return folder / "out" / (f"long.{lang}.{fmt}" if lang else f"long.{fmt}")


def srt_cues(path: Path) -> list[tuple[int, int, str]]:
    """(start ms, end ms, lines) of each cue, as the srt package reads them."""
    return [
        (c.start // _MS, c.end // _MS, c.content)
        for c in srt.parse(path.read_text(encoding="utf-8"))
    ]


_MS = srt.timedelta(milliseconds=1)


@pytest.mark.parametrize("lang", [None, "de"], ids=["transcript", "translation"])
def test_vtt_ass_tsv_and_txt_hold_the_srt_cues(written, lang):
    cues = srt_cues(out(written, lang, "srt"))
    assert len(cues) >= 10
    vtt = [
        (c.start_time.in_milliseconds(), c.end_time.in_milliseconds(), c.text)
        for c in webvtt.read(str(out(written, lang, "vtt"))).captions
    ]
    assert vtt == cues
    ass = pysubs2.load(str(out(written, lang, "ass")))
    assert len(ass.events) == len(cues)
    for event, (start, end, text) in zip(ass.events, cues, strict=True):
        assert abs(event.start - start) <= 5 and abs(event.end - end) <= 5  # centiseconds
        assert event.plaintext == text
    with out(written, lang, "tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["start", "end", "text"]
    assert [(int(a), int(b), t) for a, b, t in rows[1:]] == [
        (a, b, t.replace("\n", " ")) for a, b, t in cues
    ]
    lines = out(written, lang, "txt").read_text(encoding="utf-8").splitlines()
    assert lines == [t.replace("\n", " ") for _a, _b, t in cues if t]  # (tiny MT: some empty)


def test_json_holds_segments_with_their_words_and_the_cues(written):
    data = json.loads(out(written, None, "json").read_text(encoding="utf-8"))
    assert data["language"] == "en" and data["model"] == "tiny.en" and data["flags"] == []
    assert data["options"]["max_line_width"] == 42 and data["options"]["word_timestamps"]
    assert data["segments"] and all(s["words"] for s in data["segments"])
    for segment in data["segments"]:
        assert "".join(w["word"] for w in segment["words"]).strip() == segment["text"]
        for w in segment["words"]:
            assert w["start"] <= w["end"] and 0 <= w["probability"] <= 1
    cues = srt_cues(out(written, None, "srt"))
    assert [(round(c["start"] * 1000), round(c["end"] * 1000)) for c in data["cues"]] == [
        (a, b) for a, b, _t in cues
    ]
    starts = {round(w["start"] * 1000) for s in data["segments"] for w in s["words"]}
    assert all(a in starts for a, _b, _t in cues)  # each cue starts at a word
    words = " ".join(w["word"].strip() for s in data["segments"] for w in s["words"])
    assert data["text"] == words
    translated = json.loads(out(written, "de", "json").read_text(encoding="utf-8"))
    assert translated["language"] == "de" and translated["translated_from"] == "en"
    assert len(translated["segments"]) == len(cues)
    assert all(s["words"] == [] for s in translated["segments"])


def test_karaoke_highlights_each_word_of_the_transcript_as_it_is_spoken(written):
    ass = pysubs2.load(str(out(written, None, "ass")))
    assert set(ass.styles) >= {"Default", "Karaoke"}
    for event in ass.events:
        assert event.style == "Karaoke"
        parts = event.text.split("{\\k")[1:]
        assert len(parts) == len(event.plaintext.split())  # one tag a word
        shown = sum(int(p.split("}")[0]) for p in parts) * 10  # ms until the last word ends
        assert event.duration - MAX_TAIL * 1000 - 20 <= shown <= event.duration + 10
    translation = pysubs2.load(str(out(written, "de", "ass")))
    assert all(e.style == "Default" and "\\k" not in e.text for e in translation.events)


def test_other_layout_flags_rewrite_the_files_from_the_stored_transcript(written, session_cache):
    before = srt_cues(out(written, None, "srt"))
    printed = subq_run(
        written, session_cache, "--format", "srt,ass", "--max-line-width", "20",
        "--max-lines", "1", "--max-cue-seconds", "3",
    )  # fmt: skip
    assert "reusing the stored transcript" in printed and "Loaded whisper" not in printed
    after = srt_cues(out(written, None, "srt"))
    assert len(after) > len(before)
    for start, end, text in after:
        assert "\n" not in text and (len(text) <= 20 or " " not in text)
        assert end - start <= 3000
    ass = pysubs2.load(str(out(written, None, "ass")))  # no --karaoke: plain cues
    assert [(e.plaintext, e.style) for e in ass.events] == [(t, "Default") for *_t, t in after]
