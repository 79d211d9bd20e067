"""Cues cut at the words the model timed, laid out as the settings say (issue 27).

One real transcription of story.mp3 (3 minutes, tiny.en, faster-whisper) feeds every cue
test: the cues are built from its stored segments many times over, one layout after
another. Each backend's loop is checked to keep its words, and a resumed file keeps the
same words as a clean run.
"""

from __future__ import annotations

import itertools
import json
from functools import partial

import pytest

pytest.importorskip("faster_whisper")

from conftest import DATA
from subq.engine import asr, media
from subq.engine.asr.batched import transcribe_batched
from subq.engine.asr.faster_whisper import load_ct2, transcribe_ct2
from subq.engine.asr.whisper_batched import transcribe_whisper_batched
from subq.engine.cue_builder import MAX_TAIL, SCRAP_SECONDS, TAIL, build_cues, ends_sentence
from subq.engine.options import Layout
from subq.engine.subtitles import make_cues, wrap

MS = 0.0015  # cue times are whole milliseconds; word times hundredths


@pytest.fixture(scope="module")
def ct2_model():
    return load_ct2("tiny.en", "cpu")


@pytest.fixture(scope="module")
def story_run(ct2_model) -> tuple[asr.Transcript, list[asr.Checkpoint]]:
    """One clean run of story.mp3 with every window's checkpoint."""
    checkpoints: list[asr.Checkpoint] = []
    result = transcribe_ct2(
        ct2_model,
        media.open_audio(DATA / "story.mp3"),
        asr.TranscribeOptions(language="en"),
        on_window=lambda cp, _f: checkpoints.append(cp),
    )
    return result, checkpoints


@pytest.fixture(scope="module")
def story(story_run) -> list[asr.Segment]:
    """story.mp3's segments as the pipeline stores and reads them back (JSON)."""
    rows = json.loads(json.dumps([s.to_json() for s in story_run[0].segments]))
    return [asr.Segment.from_json(row) for row in rows]


def words_of(segments: list[asr.Segment]) -> list[asr.Word]:
    return [w for s in segments for w in s.words if w.word.strip()]


def cue_words(cues, words: list[asr.Word]) -> list[tuple[asr.Word, asr.Word]]:
    """Each cue's first and last word (every word is in one cue, in order)."""
    assert " ".join(c.text for c in cues) == " ".join(w.word.strip() for w in words)
    out, n = [], 0
    for cue in cues:
        count = len(cue.text.split(" "))
        out.append((words[n], words[n + count - 1]))
        n += count
    return out


def assert_words_fill_their_segment(segments) -> None:
    spoken = [s for s in segments if s.text]
    assert spoken and all(s.words for s in spoken)
    for s in spoken:
        assert "".join(w.word for w in s.words).strip() == s.text
        for w in s.words:
            assert w.start <= w.end and 0.0 <= w.probability <= 1.0


def test_every_segment_keeps_its_words_through_the_stored_json(story):
    assert_words_fill_their_segment(story)
    row = story[0].to_json()
    assert asr.Segment.from_json(row) == story[0]
    old = row[:5]  # a row stored before words were kept reads as a segment without them
    assert (
        asr.Segment.from_json(old) == asr.Segment(*old) and asr.Segment.from_json(old).words == ()
    )
    assert asr.Segment(*old).to_json() == old  # and one without words is written as before


def test_cues_start_at_a_word_and_end_at_a_word_plus_the_tail(story):
    """Each cue's start is its first word's start, its end its last word's end plus the
    tail (0.2 s, up to 0.5 s for reading speed) or the next cue's start, whichever is
    first; every word is in exactly one cue, in order."""
    cues = build_cues(story, Layout())
    assert 40 <= len(cues) <= 80
    for k, (cue, (first, last)) in enumerate(
        zip(cues, cue_words(cues, words_of(story)), strict=True)
    ):
        assert cue.start == pytest.approx(first.start, abs=MS)
        assert cue.end >= last.end - MS and cue.end <= last.end + MAX_TAIL + MS
        following = cues[k + 1].start if k + 1 < len(cues) else None
        if following is not None:
            assert cue.end <= following
        if following is None or following - last.end >= TAIL:
            assert cue.end >= last.end + TAIL - MS  # room for the tail: it is there


def test_cues_break_at_sentence_ends_and_leave_no_scraps(story):
    """A sentence end closes its cue; no cue shorter than 0.8 s holds one word split off
    a sentence unless joining it to its neighbour would break the layout."""
    layout = Layout()
    cues = build_cues(story, layout)
    for cue in cues:
        inner = cue.text.split(" ")[:-1]
        assert not any(ends_sentence(w) for w in inner), cue.text
    for a, b in itertools.pairwise(cues):
        for scrap, other in ((a, b), (b, a)):
            one_word = " " not in scrap.text and scrap.end - scrap.start < SCRAP_SECONDS
            same_sentence = not ends_sentence(a.text.split(" ")[-1])
            if one_word and same_sentence:
                joined = f"{a.text} {b.text}"
                assert len(wrap(joined, layout.max_line_width)) > layout.max_lines or (
                    b.end - a.start > layout.max_cue_seconds
                ), (scrap, other)


LAYOUTS = [
    Layout(max_line_width=20),
    Layout(max_line_width=60, max_lines=1),
    Layout(max_lines=3, max_cue_seconds=10.0),
    Layout(max_cue_seconds=2.5),
    Layout(max_cps=12.0),
    Layout(max_cps=25.0),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_each_layout_setting_is_respected(story, layout):
    cues = build_cues(story, layout)
    default = build_cues(story, Layout())
    assert cues != default  # the setting changed what is written
    for k, (cue, (_first, word)) in enumerate(
        zip(cues, cue_words(cues, words_of(story)), strict=True)
    ):
        last = word.end
        lines = wrap(cue.text, layout.max_line_width)
        single = " " not in cue.text
        assert single or (
            len(lines) <= layout.max_lines
            and all(len(line) <= layout.max_line_width for line in lines)
        ), cue.text
        assert single or last - cue.start <= layout.max_cue_seconds + MS
        assert cue.end - cue.start <= layout.max_cue_seconds + MS
        # reading speed: met, or the tail is as long as it may be, or the next cue is there
        following = cues[k + 1].start if k + 1 < len(cues) else None
        fast = len(cue.text) / (cue.end - cue.start) > layout.max_cps + 0.01
        if fast:
            assert (
                cue.end >= last + MAX_TAIL - MS
                or cue.end == following
                or cue.end >= cue.start + layout.max_cue_seconds - MS
            ), cue
    shown = sum(c.end - c.start for c in cues)
    if layout.max_cps < 17:
        assert shown > sum(c.end - c.start for c in default)  # slower readers: longer cues


def test_without_word_times_the_proportional_rule_stays(story):
    bare = [asr.Segment(s.start, s.end, s.text, s.no_speech_prob, s.avg_logprob) for s in story]
    assert build_cues(bare) == make_cues((s.start, s.end, s.text) for s in bare)
    # a file with words in some segments only: each part by its own rule, none overlapping
    mixed = [*story[:10], *bare[10:20], *story[20:]]
    cues = build_cues(mixed)
    assert all(a.end <= b.start for a, b in itertools.pairwise(cues))
    assert " ".join(c.text for c in cues).split() == " ".join(s.text for s in story).split()


def test_faster_whisper_resumed_keeps_the_words_of_a_clean_run(ct2_model, story_run, story):
    """Resumed from the stored checkpoint of the last window but one (the one window left
    is decoded again), the segments equal the clean run's, words included."""
    clean, checkpoints = story_run
    assert len(checkpoints) >= 4
    stored = asr.load_checkpoint(json.loads(json.dumps(checkpoints[-2].to_json())))
    assert stored is not None and all(s.words for s in stored.segments)
    audio = media.open_audio(DATA / "story.mp3")
    resumed = transcribe_ct2(ct2_model, audio, asr.TranscribeOptions(language="en"), resume=stored)
    assert list(resumed.segments) == story and resumed.segments == clean.segments


def test_both_batched_modes_keep_their_words_too(ct2_model):
    """On a short clip (openai-whisper's own loop: test_resume_identity.py, which runs it)."""
    audio = media.decode_audio(DATA / "talk.mp4")
    whisper_model = asr.load_whisper("tiny.en", "cpu")
    runs = {
        "whisper batched": partial(transcribe_whisper_batched, whisper_model),
        "faster-whisper batched": partial(transcribe_batched, ct2_model),
    }
    for name, run in runs.items():
        result = run(audio, asr.TranscribeOptions(language="en", batch_size=2))
        assert_words_fill_their_segment(result.segments)
        cues = build_cues(result.segments)
        starts = {round(w.start, 3) for s in result.segments for w in s.words}
        assert all(round(c.start, 3) in starts for c in cues), name
    off = asr.TranscribeOptions(language="en", batch_size=2, word_timestamps=False)
    plain = transcribe_whisper_batched(whisper_model, audio, off)
    assert plain.segments and all(s.words == () for s in plain.segments)
