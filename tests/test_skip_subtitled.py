"""`--skip-subtitled` (issue 27): a file that has subtitles in each language asked for is
skipped before any model loads, and the table and the summary say why.

Sidecars are written next to copies of the committed clips; the embedded stream is muxed
here with PyAV (talk.mp4's audio and an SRT stream tagged "eng" or "fre" in a Matroska
file), and the prober's reader child reports it as it reports any file.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import av
import pytest
from conftest import DATA
from rich.style import Style
from subq.engine import JobState, Settings, prober, run_batch
from subq.engine.outputs import file_sum
from subq.engine.store import Store
from subq.engine.subtitled import language_of, reason, sidecar_language, skip_reason, wanted
from subq.tui.cli import build_run_parser, settings_from
from subq.tui.widgets.job_cells import output

SRT = "1\n00:00:00,000 --> 00:00:02,000\nHello there\n"


def mux_with_subtitles(folder: Path, name: str, language: str) -> Path:
    """talk.mp4's audio and one SRT subtitle stream tagged `language`, as NAME.mkv."""
    text = folder / f"{name}-stream.srt"
    text.write_text(SRT, encoding="utf-8")
    target = folder / f"{name}.mkv"
    with (
        av.open(str(DATA / "talk.mp4")) as src,
        av.open(str(text)) as subs,
        av.open(str(target), "w") as out,
    ):
        audio = out.add_stream_from_template(src.streams.audio[0])
        stream = out.add_stream_from_template(subs.streams[0])
        stream.metadata["language"] = language
        for source, into in ((src.streams.audio[0], audio), (subs.streams[0], stream)):
            for packet in source.container.demux(source):
                if packet.dts is not None:
                    packet.stream = into
                    out.mux(packet)
    text.unlink()
    return target


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(DATA / "talk.mp4", folder / "talk.mp4")
    shutil.copy(DATA / "podcast.mp3", folder / "podcast.mp3")
    return folder


def test_a_sidecar_and_an_embedded_stream_skip_their_files_and_say_why(
    media_dir: Path, tmp_path: Path
) -> None:
    (media_dir / "talk.en.srt").write_text(SRT, encoding="utf-8")
    lecture = mux_with_subtitles(media_dir, "lecture", "eng")
    assert prober.probe_isolated(lecture).subtitles == ("eng",)
    state = tmp_path / "state.db"
    args = build_run_parser().parse_args(
        [str(media_dir / "talk.mp4"), str(lecture), "--skip-subtitled", "--device", "cpu"]
    )
    out = io.StringIO()
    code = run_batch(args.paths, settings_from(args), state=state, events=None, out=out)
    printed = out.getvalue()
    assert code == 0, printed
    assert "Loaded whisper" not in printed  # nothing was transcribed
    assert "skipped talk.mp4: already has subtitles: talk.en.srt (--skip-subtitled)" in printed
    assert "already has subtitles: an embedded eng stream" in printed
    store = Store(state)
    jobs = store.jobs()
    store.close()
    assert [j.state for j in jobs] == [JobState.SKIPPED, JobState.SKIPPED]
    cell = output(jobs[0], Style()).plain  # the job table's last column
    assert cell == "skipped: already has subtitles: talk.en.srt (--skip-subtitled)"
    assert not (media_dir / "talk.srt").exists()  # nothing was written


def test_each_language_asked_for_needs_its_own_subtitle(media_dir: Path) -> None:
    talk, base = media_dir / "talk.mp4", media_dir / "talk"
    en = Settings(language="en")
    en_de = Settings(language="en", translate_to=("de",))
    mine = lambda _path: True  # noqa: E731 - every file here is the user's

    def why(settings: Settings, streams: tuple[str, ...] = ()) -> str | None:
        return reason(talk, base, streams, wanted(settings), mine)

    assert why(en) is None
    (media_dir / "talk.de.srt").write_text(SRT, encoding="utf-8")
    assert why(en) is None  # German is no English subtitle
    assert why(Settings(model="base")) is not None  # spoken language unknown: may be German
    assert why(Settings(model="base", translate_to=("de",))) is None  # de is the translation's
    assert why(en_de, ("eng",)) == (
        "already has subtitles: an embedded eng stream, talk.de.srt (--skip-subtitled)"
    )
    (media_dir / "talk.en.forced.vtt").write_text("WEBVTT\n", encoding="utf-8")
    assert "talk.en.forced.vtt, talk.de.srt" in why(en_de)
    assert why(Settings(model="base", language="fr"), ("fre",)) is not None  # 639-2/B tag
    assert why(Settings(model="base", language="es"), ("fre",)) is None


def test_names_that_are_another_file_s_or_no_language_are_read_right() -> None:
    assert [language_of(t) for t in ("eng", "pt-BR", "fra_Latn", "German", "part2")] == [
        "en", "pt", "fr", "de", None,
    ]  # fmt: skip
    names = ("talk.srt", "talk.forced.srt", "talk.ger.ass", "talk.part2.srt")
    assert [sidecar_language(Path(n), "talk") for n in names] == ["", "", "de", None]


def test_subtitles_subq_wrote_itself_do_not_count(media_dir: Path, tmp_path: Path) -> None:
    """Its own outputs are judged by skip-if-done (up to date or not); once the user edits
    one, it is theirs."""
    own = media_dir / "talk.srt"
    own.write_text(SRT, encoding="utf-8")
    store = Store(tmp_path / "state.db")
    store.record_written({str(own): file_sum(own) or ""})
    talk = media_dir / "talk.mp4"
    try:
        assert skip_reason(talk, media_dir / "talk", (), Settings(), store) is None
        own.write_text(SRT + "\n2\n00:00:03,000 --> 00:00:04,000\nMine\n", encoding="utf-8")
        assert skip_reason(talk, media_dir / "talk", (), Settings(), store) is not None
    finally:
        store.close()
