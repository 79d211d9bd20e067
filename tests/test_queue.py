"""The queue's one rule for moving a job, shared by the engine and the job table."""

from __future__ import annotations

import pytest
from subq.engine import reorder


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("up", [1, 3, 2, 4]),
        ("down", [1, 2, 4, 3]),
        ("top", [3, 1, 2, 4]),
        ("bottom", [1, 2, 4, 3]),
    ],
)
def test_reorder_moves_one_job(where: str, expected: list[int]) -> None:
    assert reorder([1, 2, 3, 4], 3, where) == expected  # type: ignore[arg-type]


def test_reorder_stops_at_the_ends_and_ignores_unknown_ids() -> None:
    order = [1, 2, 3]
    assert reorder(order, 1, "up") == [1, 2, 3]
    assert reorder(order, 3, "down") == [1, 2, 3]
    assert reorder(order, 9, "top") == [1, 2, 3]
    assert order == [1, 2, 3]  # the caller's list is left alone
