"""Paths a user gives (`subq run ARGS`, the picker): files, folders and globs through links.

Issue 14.4: a glob over a tree with a link loop hung (two loops: the matches grow
exponentially with depth) or repeated a file 41 times (one loop, until ELOOP). Folders and
globs now share one walker: a link is followed once, never into a loop, each real file once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from subq.engine import media

DATA = Path(__file__).parent / "data"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """top/ with two loops, a self-loop, a link to a sibling file and links to a folder
    outside; three real media files reachable, plus a non-media file and a hidden one."""
    top = tmp_path / "top"
    sub = top / "sub"
    outside = tmp_path / "outside"
    sub.mkdir(parents=True)
    outside.mkdir()
    clip = (DATA / "podcast.mp3").read_bytes()
    for path in (top / "a.mp3", sub / "b.mp3", outside / "o.mp3"):
        path.write_bytes(clip)
    (top / "notes.txt").write_text("not media")
    (sub / "loop").symlink_to("..")  # sub/loop -> top: a loop
    (sub / "again").symlink_to("../sub")  # sub/again -> sub: a second loop
    (sub / "here").symlink_to(".")  # a folder linked to itself
    (top / "self.mp3").symlink_to("self.mp3")  # a link to itself (ELOOP on open)
    (top / "0-link.mp3").symlink_to("a.mp3")  # sorts before the file it names
    (top / "ext").symlink_to(outside)  # followed once...
    (top / "ext2").symlink_to(outside)  # ...and the same folder again: not twice
    return top


def expected(top: Path) -> set[Path]:
    return {top / "a.mp3", top / "sub" / "b.mp3", top / "ext" / "o.mp3"}


def timed(args: list[str]) -> tuple[list[Path], float]:
    started = time.monotonic()
    paths = media.expand_paths(args)
    return paths, time.monotonic() - started


@pytest.mark.parametrize("pattern", ["**/*.mp3", "**/*", "**", "*/../**/*.mp3"])
def test_a_glob_over_link_loops_lists_each_real_file_once_quickly(tree: Path, pattern: str) -> None:
    paths, seconds = timed([str(tree / pattern)])
    assert seconds < 5  # the old expander never returned on this tree
    assert len({os.path.realpath(p) for p in paths}) == len(paths) == 3
    if ".." in pattern:  # a name through `..` is the real path (`..` after a link is not lexical)
        assert {Path(os.path.realpath(p)) for p in paths} == {p.resolve() for p in expected(tree)}
    else:
        assert set(paths) == expected(tree)  # real names win over links (not 0-link.mp3)


def test_a_folder_gives_the_same_files_as_its_glob(tree: Path) -> None:
    by_folder, seconds = timed([str(tree)])
    assert seconds < 5
    assert by_folder == media.expand_paths([str(tree / "**" / "*.mp3")])
    assert set(by_folder) == expected(tree)
    assert by_folder == sorted(by_folder)


def test_a_glob_part_is_matched_against_each_link_name(tmp_path: Path) -> None:
    """`b*/` names the link b -> a even though a (real, the same folder) sorts first."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp3").write_bytes(b"x")
    (tmp_path / "b").symlink_to("a")
    assert media.expand_paths([str(tmp_path / "b*" / "*.mp3")]) == [tmp_path / "b" / "x.mp3"]


def test_globs_follow_the_shell_on_hidden_names_and_folders_include_them(
    tmp_path: Path,
) -> None:
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "h.mp3").write_bytes(b"x")
    (tmp_path / ".dot.mp3").write_bytes(b"x")
    (tmp_path / "v.mp3").write_bytes(b"x")
    assert media.expand_paths([str(tmp_path / "**" / "*.mp3")]) == [tmp_path / "v.mp3"]
    assert media.expand_paths([str(tmp_path / ".*.mp3")]) == [tmp_path / ".dot.mp3"]
    assert len(media.expand_paths([str(tmp_path)])) == 3


def test_what_names_nothing_is_kept_to_fail_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    args = ["empty", "missing.mp4", "*.mkv", "notes.txt"]
    paths = media.expand_paths([str(tmp_path / a) for a in args])
    assert paths == [tmp_path / a for a in args]  # a named file is kept whatever its type


def test_a_cancelled_walk_stops(tree: Path) -> None:
    assert media.expand_path(str(tree), cancelled=lambda: True) == []
