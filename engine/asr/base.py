"""What every transcription backend shares: segments, checkpoints, safe points, the audio
a loop reads, and the `Recognizer` protocol each backend meets.

This module imports nothing of its own package, so the backends and their loops all import
from here and never from each other's privates: no import cycle among them.

A checkpoint holds everything the next decoding window depends on, so that a resumed file
comes out exactly as if it had never stopped: the prompt as token ids (timestamp tokens
included; text would lose them, and tiny.en then stops emitting timestamps), the seek in
whole mel frames, the end of the last word (word timing starts its search there), the
language, the file's loudest log-mel value (loudness.py), and in batched mode the whole
file's speech map and how many chunks are done.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..options import SAMPLE_RATE, TranscribeOptions

HOP_LENGTH = 160
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
WINDOW_SECONDS = 30.0
# Whisper keeps at most n_text_ctx // 2 - 1 prompt tokens (448 // 2 - 1 for every size);
# a checkpoint keeps that many and no more.
PROMPT_TOKENS = 223
# The checkpoint JSON's format; 1 (no "format" key) kept the prompt as text and cannot
# resume identically, so `load_checkpoint` refuses it.
CHECKPOINT_FORMAT = 2
_PUNCTUATION_ONLY = re.compile(r"^[\W_]*$", re.UNICODE)


class Word(NamedTuple):
    """One word as the model timed it: the text as the model wrote it (with its leading
    space, so "".join(words) is the segment's text in every script), seconds, and the
    model's probability. The subtitle cues are cut at these times (cue_builder.py)."""

    word: str
    start: float
    end: float
    probability: float

    @classmethod
    def of(cls, w: Any) -> Word:
        """From either library's word: a dict (openai-whisper, faster-whisper's loop) or an
        object with the same names (faster-whisper's `Word`)."""
        get = w.get if isinstance(w, dict) else lambda k: getattr(w, k)
        return cls(
            str(get("word")), float(get("start")), float(get("end")), float(get("probability"))
        )


def words_of(raw: Any) -> tuple[Word, ...]:
    """A library segment's words (None or empty: none) as `Word`s."""
    return tuple(Word.of(w) for w in raw or ())


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    words: tuple[Word, ...] = ()  # empty with word timestamps off

    def to_json(self) -> list[Any]:
        """A plain row; the words, where there are any, as a sixth item of
        [word, start, end, probability] rows. A row without words is the five items rows
        had before words were kept, so stored transcripts read either way."""
        row: list[Any] = [self.start, self.end, self.text, self.no_speech_prob, self.avg_logprob]
        if self.words:
            row.append([list(w) for w in self.words])
        return row

    @classmethod
    def from_json(cls, row: list[Any]) -> Segment:
        head, words = row[:5], row[5] if len(row) > 5 else ()
        return cls(*head, words=tuple(Word(*w) for w in words))


@dataclass(frozen=True)
class Checkpoint:
    """How far a transcription got, and all the state the next window depends on.

    `seek` (seconds) is for people and for the queue's resume position; the backends resume
    from `frame`. `speech`, `chunks_done` and `batch_size` are batched mode's: the speech map
    of the whole file (VAD is stateful, so running it again on the tail cuts differently).
    """

    seek: float
    segments: tuple[Segment, ...] = ()
    frame: int = 0
    prompt: tuple[int, ...] = ()
    last_speech: float = 0.0
    language: str | None = None
    speech: tuple[tuple[int, int], ...] | None = None
    language_probability: float | None = None
    chunks_done: int = 0
    batch_size: int = 0
    loudest: float | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "seek": self.seek,
            "frame": self.frame,
            "prompt": list(self.prompt),
            "last_speech_timestamp": self.last_speech,
            "language": self.language,
            "segments": [s.to_json() for s in self.segments],
        }
        if self.loudest is not None:
            data["loudest"] = self.loudest
        if self.language_probability is not None:
            data["language_probability"] = self.language_probability
        if self.speech is not None:
            data["batched"] = {
                "speech": [list(pair) for pair in self.speech],
                "chunks_done": self.chunks_done,
                "batch_size": self.batch_size,
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """Raises ValueError for a checkpoint of another format (see `load_checkpoint`)."""
        if data.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {data.get('format', 1)!r} is not resumable")
        batched = data.get("batched")
        speech = None
        if batched is not None:
            speech = tuple((int(a), int(b)) for a, b in batched["speech"])
        return cls(
            seek=float(data["seek"]),
            segments=tuple(Segment.from_json(s) for s in data.get("segments", [])),
            frame=int(data["frame"]),
            prompt=tuple(int(t) for t in data.get("prompt", [])),
            last_speech=float(data.get("last_speech_timestamp", 0.0)),
            language=data.get("language"),
            speech=speech,
            chunks_done=int(batched["chunks_done"]) if batched else 0,
            batch_size=int(batched["batch_size"]) if batched else 0,
            loudest=float(data["loudest"]) if data.get("loudest") is not None else None,
            language_probability=data.get("language_probability"),
        )


def load_checkpoint(data: dict[str, Any] | None) -> Checkpoint | None:
    """The stored checkpoint, or None where it cannot resume identically: an old text-prompt
    checkpoint (format 1) or anything unreadable; the caller restarts the file then."""
    if not data:
        return None
    try:
        return Checkpoint.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Refill:
    """A stretch of speech that had no segment and was decoded again without the prompt
    (gaps.py): where, and how many segments it gave."""

    start: float
    end: float
    segments: int

    def to_json(self) -> list[float]:
        return [self.start, self.end, self.segments]


@dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...]
    language: str | None
    windows: int = 0
    language_probability: float | None = None  # where the language was detected
    stats: dict[str, float] = field(default_factory=dict)
    refilled: tuple[Refill, ...] = ()


class TranscriptionStopped(Exception):
    """The window hook asked to stop; carries the checkpoint to resume from."""

    def __init__(self, checkpoint: Checkpoint, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.checkpoint = checkpoint
        self.cause = cause


class Recognizer(Protocol):
    """One backend as the engine drives it (asr/__init__.py has one per library): load a
    model, transcribe with the safe-point hooks, say what the model holds, let it go."""

    def load(self, name: str, device: str) -> Any: ...

    def transcribe(
        self,
        model: Any,
        audio: np.ndarray | Audio,
        options: TranscribeOptions,
        *,
        resume: Checkpoint | None = None,
        on_window: WindowHook | None = None,
        on_segment: SegmentHook | None = None,
    ) -> Transcript: ...

    def footprint(self, model: Any) -> int: ...

    def unload(self, model: Any) -> None: ...


class ModelLoadError(Exception):
    """The model cannot be loaded; str() is the one-line message for the user."""


WindowHook = Callable[[Checkpoint, float], None]
SegmentHook = Callable[[float], None]  # the fraction done, after each finished segment


def announce(checkpoint: Checkpoint, total: float, on_window: WindowHook | None) -> None:
    """A safe point of every backend: hand `on_window` the checkpoint and the fraction done;
    if it raises, the stage stops with `TranscriptionStopped` carrying that checkpoint."""
    if on_window is None:
        return
    try:
        on_window(checkpoint, min(1.0, checkpoint.seek / total) if total else 1.0)
    except Exception as exc:
        raise TranscriptionStopped(checkpoint, exc) from exc


def window_seed(frame: int, temperature: float) -> int:
    """The sampler's seed for one window's temperature fallback: the same window at the same
    temperature always samples the same, clean run or resumed. (It once included the file's
    length, which a file decoded as it is read does not know until its end.)"""
    return zlib.crc32(f"{frame}:{temperature:.3f}".encode())


def drop_invented(segments: tuple[Segment, ...], options: TranscribeOptions) -> tuple[Segment, ...]:
    """Drop what whisper invents on silence, noise and tones: empty or punctuation-only
    text, segments it was itself unsure were speech (high no-speech and low log-probability),
    and segments whose average log-probability is under twice the fallback threshold."""
    kept = []
    for s in segments:
        if not s.text or _PUNCTUATION_ONLY.match(s.text) or s.end <= s.start:
            continue
        if s.no_speech_prob > options.no_speech_threshold and (
            s.avg_logprob < options.logprob_threshold
        ):
            continue
        # Still far below whisper's own quality bar after every temperature fallback: on a
        # tone or music this is where single invented words ("probably") come from.
        if s.avg_logprob < 2 * options.logprob_threshold:
            continue
        kept.append(s)
    return tuple(kept)


def model_path(name: str) -> Path | None:
    """`name` as an existing file or folder, else None (a model name, or no path at all:
    "~nouser/x" and 300-character names raise in pathlib; the loaders then say so)."""
    try:
        path = Path(name).expanduser()
        return path if path.exists() else None
    except (OSError, RuntimeError, ValueError):
        return None


N_FFT = 400  # both libraries' STFT window (25 ms)


class Audio(Protocol):
    """What the transcribe loops read: `media.AudioSource` (a file decoded forward as it
    is read) or `ArrayAudio` (samples already in memory). Reads only move forward."""

    @property
    def duration(self) -> float: ...

    def read(self, start: int, count: int) -> np.ndarray: ...

    def length_within(self, limit: int) -> int: ...

    def reopen(self) -> Audio: ...


class ArrayAudio:
    """Samples in memory as an `Audio` (zeros past the end, like a file's source)."""

    def __init__(self, samples: np.ndarray) -> None:
        self.samples = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        self.duration = len(self.samples) / SAMPLE_RATE
        self.path: Path | None = None

    def read(self, start: int, count: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.float32)
        piece = self.samples[start : start + count]
        out[: len(piece)] = piece
        return out

    def length_within(self, limit: int) -> int:
        return min(len(self.samples), limit)

    def reopen(self) -> ArrayAudio:
        return self


def as_audio(audio: np.ndarray | Audio) -> Audio:
    return ArrayAudio(audio) if isinstance(audio, np.ndarray) else audio


def stft_input(audio: Audio, frame: int, frames: int) -> np.ndarray:
    """The samples that mel frames [frame, frame + frames) see in both libraries' centred
    STFT (hop 160, window 400): 200 before the first frame's centre to 200 after the
    last's, reflected at the file's start as their "reflect" padding does, zeros past its
    end as their zero padding does. So a window's features need only its own samples."""
    half = N_FFT // 2
    start = frame * HOP_LENGTH - half
    count = (frames - 1) * HOP_LENGTH + N_FFT
    if start >= 0:
        return audio.read(start, count)
    body = audio.read(0, count + start)
    return np.concatenate([body[-start:0:-1], body])
