"""Translation through the whole engine, with a tiny random Marian model loaded by path."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

from conftest import wait_for
from subq.engine.headless import run_batch
from subq.engine.jobs import JobState
from subq.engine.model_types import TRANSLATION, WHISPER
from subq.engine.settings import Settings
from test_pipeline import srt_text

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
        device="cpu",  # one worker: its models serve both files
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
    assert "podcast.mp3" in job.error and "translation en→de failed" in job.error
    srt = clips["podcast.mp3"].with_suffix(".srt")
    assert srt.exists() and srt_text(srt)  # the transcript's subtitles survive the failure
    assert job.outputs == (str(srt),)


def test_a_failed_language_keeps_the_rest_and_retry_redoes_only_it(
    make_engine, clips, tiny_marian, tmp_path
):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_marian, models / "opus-de")  # no opus-fr yet: that language fails
    settings = Settings(
        keep_alive=-1, translate_to=("de", "fr"), translation_model=str(models / "opus-{tgt}")
    )
    engine = make_engine(settings, whole_queue=False)
    engine.start()
    engine.add([str(clips["podcast.mp3"])])
    assert engine.wait_idle(120)
    job = engine.jobs()[0]
    assert job.state == JobState.FAILED
    assert "translation en→fr failed" in job.error and "opus-fr" in job.error
    base = clips["podcast.mp3"].with_suffix("")
    german = Path(f"{base}.de.srt")
    assert german.exists() and Path(f"{base}.srt").exists()
    assert not Path(f"{base}.fr.srt").exists()
    written_de = german.read_text(encoding="utf-8")

    shutil.copytree(tiny_marian, models / "opus-fr")
    loads = dict(engine.models.load_counts)
    engine.retry(job.id)
    assert wait_for(lambda: engine.jobs()[0].state == JobState.DONE, 120)
    assert engine.models.load_counts[WHISPER] == loads[WHISPER]  # transcript reused
    assert engine.models.load_counts[TRANSLATION] == loads[TRANSLATION] + 1  # only French
    assert Path(f"{base}.fr.srt").exists()
    assert german.read_text(encoding="utf-8") == written_de


def test_subq_run_exits_1_when_a_translation_fails(clips, tmp_path):
    out = io.StringIO()
    code = run_batch(
        [str(clips["talk.mp4"])],
        Settings(translate_to=("de",), translation_model=str(tmp_path / "nothing-here")),
        state=tmp_path / "q.db",
        events=None,
        out=out,
    )
    assert code == 1
    printed = out.getvalue()
    assert "error: talk.mp4: translation en→de failed" in printed
    assert clips["talk.mp4"].with_suffix(".srt").exists()
