"""Junk taken out and listed, never silently, and quality flags at a glance (issue 27), on
the real model's output.

One `subq run` of six small clips made here feeds most tests: clean speech (talk.mp4); a
sentence looped by repeating its audio (lecture's last sentence four times: tiny.en writes
four segments); a phrase looped inside one segment (the podcast's first words five times:
tiny.en writes one segment saying them five times); 20 s of digital silence (where tiny.en
invents "you"); white noise; and a music-like melody. The transcripts it stored (the
model's own segments) go through the clean-up again with lines injected, checked against
the real VAD in the real reader child. Whisper base gives the language flag.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import srt
from conftest import DATA, non_speech
from subq.engine import asr, junk, media, prober, wire
from subq.engine.findings import INVENTED, REPEAT, cleanup_summary
from subq.engine.headless import run_batch
from subq.engine.settings import Settings
from subq.engine.store import Store

SR = 16_000


def write_wav(path: Path, samples: np.ndarray) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def melody(seconds: int = 20) -> np.ndarray:
    """Notes with harmonics over a bass note, a click on every other one: music, no words."""
    notes = (261.6, 329.6, 392.0, 523.3, 392.0, 329.6, 293.7, 349.2)
    out = np.zeros(SR * seconds, dtype=np.float32)
    step = int(0.4 * SR)
    t = np.arange(step) / SR
    for k, start in enumerate(range(0, len(out) - step, step)):
        f = notes[k % len(notes)]
        tone = sum(0.5**h * np.sin(2 * np.pi * f * (h + 1) * t) for h in range(4))
        out[start : start + step] += 0.2 * (tone + 0.5 * np.sin(np.pi * f * t)) * np.exp(-3 * t)
        if k % 2 == 0:
            click = np.random.default_rng(k).normal(0, 0.2, 800) * np.exp(-np.arange(800) / 150)
            out[start : start + 800] += click
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("junk")
    lecture = media.decode_audio(DATA / "lecture.mkv")
    podcast = media.decode_audio(DATA / "podcast.mp3")
    talk = media.decode_audio(DATA / "talk.mp4")
    made = {
        "loop_segments": np.tile(lecture[int(5.4 * SR) : int(8.0 * SR)], 4),
        "loop_words": np.tile(podcast[: int(2.9 * SR)], 5),
        "silence": non_speech("silence", 20),
        "noise": non_speech("white noise", 20),
        "melody": melody(),
        "talk_silence": np.concatenate([talk, np.zeros(20 * SR, np.float32)]),
    }
    out = {name: write_wav(folder / f"{name}.wav", a) for name, a in made.items()}
    out["talk"] = Path(shutil.copy(DATA / "talk.mp4", folder / "talk.mp4"))
    return out


@pytest.fixture(scope="module")
def batch(clips, tmp_path_factory):
    """One `subq run` of every clip but talk_silence: (jobs by name, printed, folder)."""
    folder = tmp_path_factory.mktemp("batch")
    names = ["talk", "loop_segments", "loop_words", "silence", "noise", "melody"]
    out = io.StringIO()
    settings = Settings(formats=("srt", "json"), output_dir=str(folder / "out"), device="cpu")
    code = run_batch(
        [str(clips[n]) for n in names],
        settings,
        state=folder / "state.db",
        events=folder / "events.jsonl",
        out=out,
    )
    assert code == 0, out.getvalue()
    store = Store(folder / "state.db")
    jobs = {Path(j.path).stem: j for j in store.jobs()}
    store.close()
    return jobs, out.getvalue(), folder


def raw_segments(folder: Path, name: str) -> list[asr.Segment]:
    """The transcript the model wrote for a clip, as the state file keeps it (uncleaned)."""
    db = sqlite3.connect(folder / "state.db")
    rows = db.execute("SELECT path, transcript FROM jobs").fetchall()
    db.close()
    found = [json.loads(t) for p, t in rows if Path(p).stem == name]
    return [asr.Segment.from_json(row) for row in found[0]]


def written(folder: Path, name: str) -> tuple[str, dict]:
    """The SRT's text on one line, and the json output."""
    cues = srt.parse((folder / "out" / f"{name}.srt").read_text(encoding="utf-8"))
    text = " ".join(c.content.replace("\n", " ") for c in cues)
    return text, json.loads((folder / "out" / f"{name}.json").read_text(encoding="utf-8"))


def said(text: str) -> str:
    return junk.words(text)


def test_flags_on_clean_speech_noise_a_melody_silence_and_loops(batch) -> None:
    jobs, printed, folder = batch
    flags = {name: job.flags for name, job in jobs.items()}
    assert flags["talk"] == ()
    assert flags["noise"] == flags["melody"] == ("no_speech",)
    assert flags["silence"][0] == "no_speech"
    assert "repetitive" in flags["loop_segments"] and "repetitive" in flags["loop_words"]
    assert dict(jobs["loop_segments"].measures)["compression_ratio"] > 2.4
    assert dict(jobs["talk"].measures)["avg_logprob"] > -0.6
    for name, job in jobs.items():  # the json output says the same
        assert written(folder, name)[1]["flags"] == list(job.flags)
    rows = {line.split()[1]: line for line in printed.splitlines() if line[:1].isdigit()}
    assert "loops" in rows["loop_segments.wav"] and "silent" in rows["noise.wav"], printed
    assert rows["talk.mp4"].split()[4].endswith("s"), printed  # no flags: the time is next
    events = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
    done = {Path(e["path"]).stem: e for e in events if e.get("state") == "done"}
    assert done["noise"]["flags"] == ["no_speech"] and done["talk"]["flags"] == []


def test_a_sentence_looped_as_segments_is_one_cue_and_the_collapse_is_listed(batch) -> None:
    jobs, printed, folder = batch
    raw = raw_segments(folder, "loop_segments")
    sentence = said(raw[0].text)
    copies = [s for s in raw if said(s.text) == sentence]
    assert len(copies) >= 3  # what tiny.en wrote: the sentence as often as it was said
    text, data = written(folder, "loop_segments")
    assert said(text) == sentence
    (removal,) = data["removed"]
    assert (removal["kind"], removal["count"]) == (REPEAT, len(copies) - 1)
    assert removal["start"] == pytest.approx(copies[1].words[0].start)
    summary = f"{len(copies) - 1} repeated cues collapsed at 0:0{int(copies[1].start)}"
    assert data["removed_summary"] == summary == cleanup_summary(jobs["loop_segments"].removed)
    assert f"  cleaned: {summary}\n" in printed


def test_a_phrase_looped_inside_one_segment_is_cut_at_its_words(batch) -> None:
    _jobs, _printed, folder = batch
    raw = raw_segments(folder, "loop_words")
    phrase = "welcome back to our show"
    assert said(" ".join(s.text for s in raw)).count(phrase) >= 3
    text, data = written(folder, "loop_words")
    assert said(text).count(phrase) == 1, text
    assert [r["kind"] for r in data["removed"]] == [REPEAT]
    assert phrase in said(data["removed"][0]["text"])


def test_the_line_tiny_en_invents_on_silence_is_removed_where_the_vad_hears_nothing(
    batch, clips
) -> None:
    _jobs, printed, folder = batch
    raw = raw_segments(folder, "silence")
    invented = [s for s in raw if junk.is_invented_phrase(s.text)]
    assert invented, raw  # tiny.en writes "you" into 20 s of silence
    spans = [(s.start, s.end) for s in invented]
    assert prober.speech_isolated(clips["silence"], spans) == [0.0] * len(spans)
    text, data = written(folder, "silence")
    assert text == "" and data["cues"] == []
    assert [(r["kind"], r["text"]) for r in data["removed"]] == [
        (INVENTED, s.text.strip()) for s in invented
    ]
    assert f"invented line{'s' if len(invented) > 1 else ''} removed at 0:" in printed


def test_known_phrases_go_only_where_nobody_speaks_in_four_languages(batch, clips) -> None:
    """talk.mp4's own transcript (run again here: its clip has 20 s of silence after it)
    with lines injected: over the silence they go, over the speech they stay."""
    raw = raw_segments(batch[2], "talk")
    assert raw[0].end < 9.9
    injected = [
        replace(raw[0], text="Thank you."),  # over speech: stays
        raw[1],
        asr.Segment(11.0, 12.5, "Thanks for watching!", 0.3, -0.5),
        asr.Segment(13.0, 15.0, "Sous-titres réalisés par la communauté d'Amara.org", 0.3, -0.5),
        asr.Segment(15.5, 17.0, "¡Gracias por ver el video!", 0.3, -0.5),
        asr.Segment(18.0, 20.0, "Untertitel im Auftrag des ZDF, 2017", 0.3, -0.5),
    ]
    speech = lambda spans: prober.speech_isolated(clips["talk_silence"], spans)  # noqa: E731
    cleaned = junk.clean(injected, speech)
    assert [s.text for s in cleaned.segments] == ["Thank you.", raw[1].text]
    assert [r.start for r in cleaned.removed] == [11.0, 13.0, 15.5, 18.0]
    assert cleanup_summary(cleaned.removed) == "4 invented lines removed at 0:11, 0:13, 0:15, …"
    # without the VAD, the model's no-speech probability decides: 0.3 is speech to it
    assert junk.clean(injected, lambda spans: None).removed == ()


@pytest.mark.parametrize(
    "line",
    [
        "you",
        "Thank you.",
        "Thanks for watching!",
        "Please subscribe to my channel.",
        "Subtitles by the Amara.org community",
        "Merci d'avoir regardé cette vidéo !",
        "Sous-titrage Société Radio-Canada",
        "Subtítulos realizados por la comunidad de Amara.org",
        "Gracias.",
        "Vielen Dank fürs Zuschauen!",
        "Untertitelung im Auftrag des ZDF für funk, 2017",
    ],
)
def test_whisper_s_inventions_are_known(line: str) -> None:
    assert junk.is_invented_phrase(line)


@pytest.mark.parametrize(
    "line",
    ["Thank you for the coffee.", "You are right.", "Merci pour tout.", "Danke, Anna."],
)
def test_sentences_that_merely_start_like_them_are_not(line: str) -> None:
    assert not junk.is_invented_phrase(line)


def test_without_word_times_a_loop_collapses_by_segment(batch) -> None:
    raw = raw_segments(batch[2], "loop_segments")
    plain = [replace(s, words=()) for s in raw]
    kept, removed = junk.collapse_repeats(plain)
    assert kept == plain[:1] and removed[0].count == len(plain) - 1


def test_keep_junk_writes_everything_from_the_stored_transcript(batch, clips) -> None:
    """The setting is part of the output key: a second run rewrites the files from the
    stored transcript (no model is loaded) with every copy in them."""
    _jobs, _printed, folder = batch
    out = io.StringIO()
    settings = Settings(
        formats=("srt", "json"), output_dir=str(folder / "out"), device="cpu", keep_junk=True
    )
    code = run_batch(
        [str(clips["loop_segments"])], settings, state=folder / "state.db", events=None, out=out
    )
    assert code == 0 and "Loaded whisper" not in out.getvalue(), out.getvalue()
    raw = raw_segments(folder, "loop_segments")
    text, data = written(folder, "loop_segments")
    assert said(text) == said(" ".join(s.text for s in raw))
    assert data["removed"] == [] and "repetitive" in data["flags"]


def test_findings_are_stored_with_the_job_and_cross_the_socket_whole(batch) -> None:
    jobs = batch[0]
    job = jobs["loop_segments"]
    assert job.removed and job.measures
    assert wire.decode(wire.encode(job)) == job


def test_base_flags_a_language_it_guessed_on_music_and_not_clear_spanish() -> None:
    from subq.engine.asr.faster_whisper import load_ct2, transcribe_ct2
    from subq.engine.quality import flags, measure

    model = load_ct2("base", "cpu")
    for audio, expected in ((melody(), ("no_speech", "unsure_language")), (None, ())):
        audio = media.decode_audio(DATA / "spanish.mp3") if audio is None else audio
        result = transcribe_ct2(model, audio, asr.TranscribeOptions())
        values = measure(result.segments, len(audio) / SR, result.language_probability)
        assert flags(values) == expected, (values, result.language)
