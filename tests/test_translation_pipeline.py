"""Translation through the whole engine, with a tiny random Marian model loaded by path."""

from __future__ import annotations

import re
from pathlib import Path

from subq.engine.jobs import JobState
from subq.engine.models import TRANSLATION, WHISPER
from subq.engine.settings import Settings

TIMING = re.compile(r"^\d\d:\d\d:\d\d[,.]\d{3} --> \d\d:\d\d:\d\d[,.]\d{3}$")


def cue_timings(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if TIMING.match(line)]


def test_translated_subtitles_keep_cue_count_and_timings(make_engine, clips, tiny_marian):
    settings = Settings(
        keep_alive=-1,
        translate_to=("de", "fr"),
        translation_model=str(tiny_marian),
        formats=("srt", "vtt"),
        translation_batch_size=4,
    )
    engine = make_engine(settings, whole_queue=False)
    engine.start()
    engine.add([str(clips["long.mp3"]), str(clips["podcast.mp3"])])
    assert engine.wait_idle(300)
    assert [j.state for j in engine.jobs()] == [JobState.DONE, JobState.DONE]
    assert engine.models.load_counts[TRANSLATION] == 1  # one model for both files and languages
    assert engine.models.load_counts[WHISPER] == 1
    for name in ("long.mp3", "podcast.mp3"):
        base = clips[name].with_suffix("")
        for fmt in ("srt", "vtt"):
            original = cue_timings(Path(f"{base}.{fmt}"))
            assert original
            for lang in ("de", "fr"):
                translated = Path(f"{base}.{lang}.{fmt}")
                assert cue_timings(translated) == original
                assert translated.read_text(encoding="utf-8") != Path(f"{base}.{fmt}").read_text(
                    encoding="utf-8"
                )


def test_adding_a_language_later_only_translates(make_engine, clips, tiny_marian, tmp_path):
    state = tmp_path / "state.sqlite3"
    base = Settings(keep_alive=-1, translation_model=str(tiny_marian))
    first = make_engine(base, state=state, whole_queue=False)
    first.start()
    first.add([str(clips["podcast.mp3"])])
    assert first.wait_idle(120)
    first.shutdown()
    again = make_engine(
        Settings(keep_alive=-1, translation_model=str(tiny_marian), translate_to=("de",)),
        state=state,
        whole_queue=False,
    )
    again.start()
    again.add([str(clips["podcast.mp3"])])
    assert again.wait_idle(120)
    assert again.jobs()[0].state == JobState.DONE
    assert again.models.load_counts[WHISPER] == 0  # the stored transcript was reused
    assert again.models.load_counts[TRANSLATION] == 1
    assert clips["podcast.mp3"].with_suffix(".de.srt").exists()


def test_missing_translation_model_fails_the_job_in_one_line(make_engine, clips):
    engine = make_engine(Settings(keep_alive=-1, translate_to=("de",)), whole_queue=False)
    engine.start()
    engine.add([str(clips["podcast.mp3"])])
    assert engine.wait_idle(120)
    job = engine.jobs()[0]
    assert job.state == JobState.FAILED
    assert "Helsinki-NLP/opus-mt-en-de" in job.error and "\n" not in job.error
