"""Decoding a long file holds its samples once (issue 14.5).

The old decoder kept a list of PyAV frames and joined them at the end: 2.1x the samples at
the peak (traced), 2.2x in RSS, and most of it stayed in the heap afterwards. Decoding into
one preallocated buffer peaks at the samples plus a second of headroom.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from long_media import loop_clip
from subq.engine import media

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def ten_minutes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    path = tmp_path_factory.mktemp("long") / "ten.mp3"
    return path, loop_clip(DATA / "long.mp3", path, 10)


@pytest.fixture(scope="module")
def four_minutes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine 30 s chunks: enough to tell a few chunks from the whole file, quick to trace."""
    path = tmp_path_factory.mktemp("long") / "four.mp3"
    loop_clip(DATA / "long.mp3", path, 4)
    return path


def traced_peak(work: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_ten_minute_file_decodes_with_its_samples_held_once(
    ten_minutes: tuple[Path, float],
) -> None:
    path, seconds = ten_minutes
    audio, peak = traced_peak(lambda: media.decode_audio(path))
    assert audio.dtype == np.float32 and audio.flags.owndata
    assert abs(audio.size / media.SAMPLE_RATE - seconds) < 1
    # 1.0x now (plus a second of headroom); a list of frames joined at the end is 2.1x
    assert peak < 1.3 * audio.nbytes, f"peak {peak / 2**20:.0f} MiB for {audio.nbytes / 2**20:.0f}"


def test_streamed_chunks_are_the_decoded_samples_in_the_memory_of_a_few_chunks(
    four_minutes: Path,
) -> None:
    path = four_minutes
    chunk = 30 * media.SAMPLE_RATE * 4  # bytes of one 30 s chunk

    def lengths_and_sums() -> list[tuple[int, float]]:
        return [(c.size, float(c.sum(dtype=np.float64))) for c in media.stream_audio(path)]

    streamed, peak = traced_peak(lengths_and_sums)
    assert peak < 4 * chunk, f"peak {peak / 2**20:.1f} MiB for 30 s chunks"
    audio = media.decode_audio(path)
    assert [n for n, _s in streamed[:-1]] == [30 * media.SAMPLE_RATE] * (len(streamed) - 1)
    assert sum(n for n, _s in streamed) == audio.size
    first = audio[: 30 * media.SAMPLE_RATE].sum(dtype=np.float64)
    assert (
        streamed[0][1] == first
        and np.array_equal(  # exact, not close
            next(iter(media.stream_audio(path, 7.5))), audio[: int(7.5 * media.SAMPLE_RATE)]
        )
    )


def test_a_duration_that_was_short_grows_the_buffer_without_losing_samples() -> None:
    """The stream's duration is a header's claim; more samples than it promised still fit."""
    samples = media._Samples(0.5, media.SAMPLE_RATE)  # room for 1.5 s
    expected = np.arange(5 * media.SAMPLE_RATE, dtype=np.float32)
    for chunk in np.array_split(expected, 70):
        samples.append(chunk[None, :])  # PyAV's (channels, samples) shape
    assert np.array_equal(samples.take(), expected)
