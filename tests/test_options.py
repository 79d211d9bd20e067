"""Bad options are caught before any work, in one line naming what is wrong and what exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from subq.engine.settings import SettingsError, config_path, load_config


def subq(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "subq.tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("device", "says"),
    [
        ("cuda:3", "--device cuda:3: no such device; this machine has: cpu"),
        ("gpu", "--device gpu: not a device name"),
        ("cuda:x", "--device cuda:x: not a device name"),
    ],
)
def test_a_device_this_machine_lacks_is_refused_at_once(clips, tmp_path, device, says):
    # Even where the outputs already exist (once a silent "skipped"), nothing runs.
    clips["talk.mp4"].with_suffix(".srt").write_text("", encoding="utf-8")
    proc = subq("run", str(clips["talk.mp4"]), "--device", device, "--state", str(tmp_path / "q"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"subq: {says}")
    assert says in proc.stderr and "this machine has: cpu" in proc.stderr
    assert not (tmp_path / "q").exists()  # refused before the queue was touched


def test_an_unknown_config_key_is_an_error_naming_key_file_and_nearest(clips, tmp_path):
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('formt = "vtt"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as err:
        load_config()
    message = str(err.value)
    assert str(path) in message and "'formt'" in message and "did you mean formats?" in message
    proc = subq("run", str(clips["talk.mp4"]), "--state", str(tmp_path / "q"))
    assert proc.returncode == 2 and "did you mean formats?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_flag_spellings_work_in_the_config_file_too():
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('format = "srt,vtt"\nkeep-alive = 5\n', encoding="utf-8")
    settings = load_config()
    assert settings.formats == ("srt", "vtt") and settings.keep_alive == 5


def test_old_state_files_with_unknown_settings_still_load():
    from subq.engine.settings import Settings

    old = '{"model": "tiny.en", "some_removed_option": 3, "formats": ["vtt"]}'
    assert Settings.from_json(old).formats == ("vtt",)


def test_a_device_error_is_never_blamed_on_the_checkpoint():
    from subq.engine import asr
    from subq.engine.bundled import bundled_checkpoint

    # Was "...bundled-whisper-....pt: not a whisper checkpoint (RuntimeError)".
    with pytest.raises(RuntimeError) as err:
        asr.load_whisper(str(bundled_checkpoint()), "cuda:3")
    assert not isinstance(err.value, asr.ModelLoadError)
    assert "CUDA" in str(err.value)


@pytest.mark.parametrize(
    ("args", "config", "says"),
    [
        (("--events", "{tmp}"), "", "--events {tmp}: is a folder; give a file"),
        (
            ("--output-dir", "{tmp}/a-file"),
            "",
            "--output-dir {tmp}/a-file: is a file, not a folder",
        ),
        (("--formt", "vtt"), "", "unrecognized arguments: --formt vtt (did you mean --format?)"),
        ((), 'beam_size = "five"\n', "beam_size = 'five': expected a whole number"),
        ((), "keep_alive = true\n", "keep_alive = True: expected a number"),
        (("--language", "xx"), "", "--language: 'xx' is not a language Whisper knows"),
        ((), 'language = "klingon"\n', "--language: 'klingon' is not a language Whisper"),
        (("--language", "es"), "", "pip install 'subq[multilingual]'"),  # tiny.en: English
    ],
)
def test_each_bad_option_is_one_line_before_any_work(clips, tmp_path, args, config, says):
    """Before: a folder for --events and a wrong type in the config were tracebacks or
    Python's own words, --output-dir naming a file failed after transcribing, a typo got
    the whole usage text and no suggestion."""
    (tmp_path / "a-file").write_text("")
    if config:
        config_path().parent.mkdir(parents=True, exist_ok=True)
        config_path().write_text(config, encoding="utf-8")
    args = tuple(a.format(tmp=tmp_path) for a in args)
    proc = subq("run", str(clips["talk.mp4"]), "--state", str(tmp_path / "q"), *args)
    assert proc.returncode == 2
    assert says.format(tmp=tmp_path) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not clips["talk.mp4"].with_suffix(".srt").exists()


def test_a_file_that_is_not_a_checkpoint_fails_its_job_in_one_line(clips, tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    proc = subq("run", str(clips["podcast.mp3"]), "--state", str(tmp_path / "q"),
                "--backend", "whisper", "--model", str(empty), "--device", "cpu")  # fmt: skip
    assert proc.returncode == 1
    assert f"{empty}: not a whisper checkpoint (EOFError)" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [["run"], []], ids=["subq run", "subq"])
def test_a_bare_cluster_before_the_paths_means_auto(command, tmp_path):
    """`--cluster FILE`: argparse alone took the file for the address, then asked for a
    PATH. A file, a folder or a glob after a bare --cluster is a path; an address stays one."""
    from subq.tui.cli import bare_cluster, build_main_parser, build_run_parser

    parser = build_run_parser() if command else build_main_parser()
    talk = tmp_path / "talk.mp4"
    talk.write_bytes(b"x")
    for given in (str(talk), str(tmp_path), str(tmp_path / "*.mp4")):
        args = parser.parse_args(bare_cluster(["--cluster", given]))
        assert (args.cluster, args.paths) == ("auto", [given])
    args = parser.parse_args(bare_cluster(["--cluster", "10.0.0.5:6379", str(talk)]))
    assert (args.cluster, args.paths) == ("10.0.0.5:6379", [str(talk)])
    args = parser.parse_args(bare_cluster([str(talk), "--cluster"]))
    assert (args.cluster, args.paths) == ("auto", [str(talk)])


def test_word_times_are_turned_off_by_a_flag_as_by_the_config_file(clips, tmp_path):
    """`word_timestamps = false` was a config key with no flag and no settings field."""
    import json

    talk = clips["talk.mp4"]
    state = str(tmp_path / "q")
    proc = subq("run", str(talk), "--state", state, "--no-word-timestamps", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    written = json.loads(talk.with_suffix(".json").read_text())
    assert written["options"]["word_timestamps"] is False and written["cues"]
    refused = subq(
        "run", str(talk), "--state", state, "--no-word-timestamps", "--karaoke", "--format", "ass"
    )
    assert refused.returncode == 2 and "--karaoke needs word times" in refused.stderr
