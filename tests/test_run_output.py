"""What `subq run` prints: counts of what this run does, one GPU note, aligned columns."""

from __future__ import annotations

import io

from subq.engine.headless import columns, run_batch, summary
from subq.engine.jobs import Job, JobState
from subq.engine.settings import Settings


def run(paths, state) -> str:
    out = io.StringIO()
    run_batch([str(p) for p in paths], Settings(), state=state, events=None, out=out)
    return out.getvalue()


def test_a_rerun_counts_only_the_files_it_processes(clips, tmp_path):
    state = tmp_path / "q.db"
    first, later = clips["talk.mp4"], clips["podcast.mp3"]
    run([first], state)
    printed = run([first, later], state)
    assert "Processing (1/1): podcast.mp3" in printed, printed
    assert "(1/2)" not in printed and "(2/2)" not in printed


def test_the_no_gpu_note_comes_once_before_the_first_job_and_never_when_nothing_runs(
    clips, tmp_path
):
    state = tmp_path / "q.db"
    printed = run([clips["talk.mp4"], clips["podcast.mp3"]], state)
    lines = printed.splitlines()
    notes = [i for i, line in enumerate(lines) if line.startswith("no GPU")]
    assert len(notes) == 1 and lines[notes[0] + 1].startswith("Processing (1/2)"), printed
    again = run([clips["talk.mp4"]], state)  # already done: nothing runs, no note
    assert "no GPU" not in again and "already done" in again


def test_summary_columns_align_with_wide_file_names(tmp_path):
    names = ["会议记录第一部分.mp4", "talk.mp4", "한국어 강의.mkv"]
    jobs = [
        Job(
            id=i,
            path=str(tmp_path / n),
            settings=Settings(),
            state=JobState.DONE,
            stage_times=(("transcribe", 1.5),),
            outputs=(str(tmp_path / "x.srt"),),
        )
        for i, n in enumerate(names, 1)
    ]
    lines = summary(jobs).splitlines()
    starts = {columns(line[: line.index("done")]) for line in lines[1:]}
    assert len(starts) == 1, lines  # "done" starts at the same terminal column on every row
    assert columns("会议") == 4 and columns("talk") == 4


def test_a_stopped_job_shows_the_time_it_spent(make_engine, clips, tmp_path):
    from test_control import paused_mid_file

    engine = paused_mid_file(make_engine, clips["long.mp3"])
    job = engine.jobs()[0]
    spent = dict(job.stage_times).get("transcribe", 0.0)
    assert spent > 0.3, job.stage_times  # the stopped stage's time is counted
