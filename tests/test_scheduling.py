"""Several workers finish a batch together (issue 28): of the files queued in one go, the
longest starts first, on the real queue and state file; the user's own order and files
already under way keep their turn, and one worker keeps queue order."""

from __future__ import annotations

import shutil

from conftest import DATA, wait_for
from subq.engine.events import JobChanged
from subq.engine.jobs import JobState
from subq.engine.queue import JobQueue
from subq.engine.settings import Settings
from subq.engine.store import Store


def queue_of(tmp_path, names: list[str]) -> tuple[JobQueue, dict[str, int]]:
    paths = [
        str(shutil.copy(DATA / name, tmp_path / f"{i}-{name}")) for i, name in enumerate(names)
    ]
    queue = JobQueue(Store(tmp_path / "s.db"), lambda _e: None, lambda *a, **k: None)
    queue.add(paths, Settings(), expanded=len(paths))
    return queue, {j.name: j.id for j in queue.jobs()}


def test_the_longest_file_of_one_add_starts_first_with_several_workers(tmp_path) -> None:
    queue, ids = queue_of(tmp_path, ["podcast.mp3", "long.mp3", "story.mp3", "podcast.mp3"])
    order = [queue.jobs()[i].id for i in range(4)]
    assert queue.next_runnable(spread=False).id == ids["0-podcast.mp3"]  # one worker
    first = queue.next_runnable(spread=True)
    assert first.id == ids["2-story.mp3"]  # 373 kB, the longest
    queue.active.add(first.id)
    assert queue.next_runnable(spread=True).id == ids["1-long.mp3"]
    assert [j.id for j in queue.jobs()] == order  # the order the user sees is unchanged


def test_the_users_order_and_a_begun_file_keep_their_turn(tmp_path) -> None:
    queue, ids = queue_of(tmp_path, ["podcast.mp3", "long.mp3", "story.mp3"])
    queue.move(ids["1-long.mp3"], "top")  # the user set the order
    assert queue.next_runnable(spread=True).id == ids["1-long.mp3"]

    (tmp_path / "b").mkdir()
    queue, ids = queue_of(tmp_path / "b", ["podcast.mp3", "story.mp3"])
    queue.change(queue.jobs()[0], JobState.QUEUED, resume_from=3.0)  # a file under way
    assert queue.next_runnable(spread=True).id == ids["0-podcast.mp3"]


def test_two_workers_start_the_long_file_at_once(make_engine, tmp_path) -> None:
    names = ["podcast.mp3", "podcast.mp3", "long.mp3"]
    paths = [str(shutil.copy(DATA / n, tmp_path / f"{i}-{n}")) for i, n in enumerate(names)]
    engine = make_engine(Settings(keep_alive=-1, device="cpu,cpu"))
    engine.start()
    engine.add(paths)

    def started() -> list[str]:
        running = [
            e.job.name
            for e in engine.events
            if isinstance(e, JobChanged) and e.job.state == JobState.RUNNING
        ]
        return list(dict.fromkeys(running))

    assert wait_for(lambda: len(started()) >= 2, timeout=60)
    assert "2-long.mp3" in started()[:2], started()
    assert wait_for(lambda: all(j.state == JobState.DONE for j in engine.jobs()), timeout=180)
