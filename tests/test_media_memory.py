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


def test_a_source_reads_forward_the_decoded_samples_in_the_memory_of_a_few_windows(
    four_minutes: Path,
) -> None:
    path = four_minutes
    window = 30 * media.SAMPLE_RATE
    audio = media.decode_audio(path)

    def windows() -> list[tuple[int, float, bool]]:
        source, out, start = media.open_audio(path), [], 0
        while start < audio.size + window:  # reads overlap and run past the end, as loops do
            got, piece = source.read(start, window + 400), audio[start : start + window + 400]
            same = np.array_equal(got[: piece.size], piece) and not got[piece.size :].any()
            out.append((got.size, float(got.sum(dtype=np.float64)), same))
            start += window - 4000
        assert source.length == audio.size and source.duration == audio.size / media.SAMPLE_RATE
        with pytest.raises(ValueError, match="forward"):
            source.read(0, 10)
        return out

    read, peak = traced_peak(windows)
    assert all(same for _n, _s, same in read)  # exact, not close
    assert peak < 4 * window * 4, f"peak {peak / 2**20:.1f} MiB for 30 s windows"


def test_a_source_skips_to_where_a_resume_starts_and_zero_pads_past_the_end() -> None:
    audio = media.decode_audio(DATA / "long.mp3")
    source = media.AudioSource(DATA / "long.mp3")
    assert source.length is None and abs(source.duration - audio.size / media.SAMPLE_RATE) < 0.1
    assert np.array_equal(source.read(600_000, 1000), audio[600_000:601_000])
    assert source.length_within(10**9) == audio.size
    tail = source.read(audio.size - 10, 30)
    assert np.array_equal(tail[:10], audio[-10:]) and not tail[10:].any()


def test_a_stream_longer_than_its_header_says_is_read_whole(tmp_path: Path) -> None:
    """The buffer is sized from the header's duration; more samples than it promised fit."""
    source = media.AudioSource(DATA / "podcast.mp3")
    source.claimed = 0.5  # room for 1.5 s
    assert np.array_equal(source.read_all(), media.decode_audio(DATA / "podcast.mp3"))


CHILD = """
import resource, sys
from pathlib import Path
from subq.engine import asr, media

backend, path = sys.argv[1], Path(sys.argv[2])
model = asr.load_backend(backend, "tiny.en", "cpu")
windows = []

def stop_after_one(checkpoint, fraction):
    windows.append(checkpoint.seek)
    if len(windows) > 1:
        raise RuntimeError("enough")

try:
    asr.run_backend(backend, model, media.open_audio(path), asr.TranscribeOptions(language="en"),
                    on_window=stop_after_one)
except asr.TranscriptionStopped:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, len(windows))
"""


@pytest.mark.parametrize(
    "backend", ["faster-whisper", pytest.param("whisper", marks=pytest.mark.slow)]
)
def test_peak_memory_of_transcribing_does_not_grow_with_the_files_length(
    backend: str, tmp_path: Path
) -> None:
    """One window of a 2- and a 12-minute file, each in a fresh process: before streaming
    the peak grew 53 MiB (faster-whisper) or 29 MiB (openai-whisper) per minute of audio,
    before the first window (whole-file samples and features); now nothing holds the file."""
    import subprocess
    import sys

    peaks = {}
    for minutes in (2, 12):
        path = tmp_path / f"{minutes}.mp3"
        loop_clip(DATA / "long.mp3", path, minutes)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, backend, str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.split()
        assert out[1] == "2"
        peaks[minutes] = int(out[0])
    grown = (peaks[12] - peaks[2]) / 2**20
    assert grown < 40, f"peak grew {grown:.0f} MiB from 2 to 12 minutes"
