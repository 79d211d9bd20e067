"""Batched long-form transcription: cut at silences, decode several chunks at once.

Sequential whisper decodes one 30 s window after another, each window waiting for the text
of the one before (it is the next window's prompt). On a GPU that leaves most of the device
idle. The whisperX approach trades that context for parallelism: a voice-activity detector
(Silero VAD, shipped inside faster-whisper as an ONNX file, so it needs no model hub) finds
speech, speech is packed into chunks of at most 30 s that start and end at silences, and the
chunks are decoded `batch_size` at a time with no prompt between them.

Each chunk is decoded as text only (asking whisper for segment timestamps inside a chunk
lost the words after its last timestamp: WER 0.14 instead of 0.01 on long.mp3), with word
timestamps, and the chunk's text is cut into subtitle-sized segments at sentence ends and
pauses using those word times, as whisperX does with its aligner.

This is opt-in (`--asr-batch-size N`): it gives up temperature fallback and the previous-text
prompt between chunks. docs/benchmarks.md measures what it costs in WER and what it buys in
time against sequential decoding.

Control works as in the sequential backends: faster-whisper's pipeline calls its `forward`
once per batch from inside its segment generator, so a per-call hook on `forward` is a safe
point where every segment of the finished batches has been taken; the first chunk's offset
is where a resumed run starts (the audio is cut there and VAD runs again on the rest).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from . import faults
from .asr import (
    SAMPLE_RATE,
    Checkpoint,
    Segment,
    SegmentHook,
    TranscribeOptions,
    Transcript,
    WindowHook,
    _drop_invented,
    announce,
)
from .asr_ct2 import CT2Model, raise_as_torch_oom


def transcribe_batched(
    model: CT2Model,
    audio: np.ndarray,
    options: TranscribeOptions,
    *,
    resume: Checkpoint | None = None,
    on_window: WindowHook | None = None,
    on_segment: SegmentHook | None = None,
) -> Transcript:
    """Transcribe `audio` in VAD-cut chunks, `options.batch_size` chunks per model call.

    `on_window` runs before each batch with the checkpoint of everything finished; if it
    raises, the stage stops with `TranscriptionStopped` carrying that checkpoint.
    """
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    pipeline = BatchedInferencePipeline(model.model)
    total = len(audio) / SAMPLE_RATE
    start_at = resume.seek if resume else 0.0
    previous = resume.segments if resume else ()
    rest = np.ascontiguousarray(audio[round(start_at * SAMPLE_RATE) :], dtype=np.float32)
    done: list[Segment] = []
    batches = 0
    original_forward = pipeline.forward
    # The pipeline's own VAD settings, passed to it explicitly so our copy of the speech map
    # is the one it cuts by (VAD costs ~0.2 % of the audio's duration on the CPU).
    vad = VadOptions(max_speech_duration_s=CHUNK_SECONDS, min_silence_duration_ms=160)
    speech: list[dict] = []

    def hooked_forward(features: Any, tokenizer: Any, chunks: list[dict], opts: Any) -> Any:
        nonlocal batches
        seek = start_at + _original_start(speech, chunks[0]["offset"]) if chunks else start_at
        checkpoint = Checkpoint(seek=seek, segments=previous + tuple(done))
        batches += 1
        faults.maybe_fail("transcribe")
        announce(checkpoint, total, on_window)
        return original_forward(features, tokenizer, chunks, opts)

    pipeline.forward = hooked_forward
    generator = None
    language = options.language
    try:
        if len(rest) >= SAMPLE_RATE // 10:  # VAD needs some audio; a resumed tail may be empty
            speech = get_speech_timestamps(rest, vad)
            generator, info = pipeline.transcribe(
                rest, vad_parameters=vad, **_batched_kwargs(options)
            )
            language = info.language
            for s in generator:
                done.extend(_pieces(s, start_at))
                if on_segment is not None and total and done:
                    on_segment(min(1.0, done[-1].end / total))
    except RuntimeError as exc:
        raise_as_torch_oom(exc)
        raise
    finally:
        if generator is not None:
            with contextlib.suppress(Exception):
                generator.close()
    segments = previous + tuple(done)
    return Transcript(segments=_drop_invented(segments, options), language=language,
                      windows=batches)


CHUNK_SECONDS = 30


def _original_start(speech: list[dict], offset: float) -> float:
    """Where a chunk starts in the audio (seconds), from its offset in speech-only time.

    The pipeline numbers chunks by the speech before them, silences cut out; a chunk always
    begins with a whole speech region, so the region with that much speech before it is it.
    """
    wanted = round(offset * SAMPLE_RATE)
    before = 0
    for region in speech:
        if before >= wanted - 1:
            return region["start"] / SAMPLE_RATE
        before += region["end"] - region["start"]
    return speech[-1]["end"] / SAMPLE_RATE if speech else 0.0


def _batched_kwargs(options: TranscribeOptions) -> dict[str, Any]:
    """The sequential backends' decoding, minus what batching cannot do (fallback, prompt)."""
    return dict(
        language=options.language,
        beam_size=options.beam_size if options.beam_size and options.beam_size > 1 else 1,
        best_of=1,
        temperature=options.temperature[0],
        no_speech_threshold=options.no_speech_threshold,
        log_prob_threshold=options.logprob_threshold,
        word_timestamps=True,  # always: the word times cut each chunk into cues
        without_timestamps=True,
        batch_size=options.batch_size,
    )


SENTENCE_END = (".", "?", "!", "…")
MAX_PIECE_SECONDS = 7.0
PAUSE_SECONDS = 1.0


def _pieces(segment: Any, offset: float) -> list[Segment]:
    """One chunk's text as subtitle-sized segments, cut where its words say.

    A piece ends at a sentence end, before a pause of a second or more, or once it has run
    MAX_PIECE_SECONDS; without word times the chunk stays one segment.
    """
    meta = dict(no_speech_prob=float(segment.no_speech_prob),
                avg_logprob=float(segment.avg_logprob))
    words = list(segment.words or ())
    if not words:
        return [Segment(start=offset + float(segment.start), end=offset + float(segment.end),
                        text=segment.text.strip(), **meta)]
    pieces: list[Segment] = []
    current: list[Any] = []

    def flush() -> None:
        text = "".join(w.word for w in current).strip()
        if text:
            pieces.append(Segment(start=offset + float(current[0].start),
                                  end=offset + float(current[-1].end), text=text, **meta))
        current.clear()

    for i, word in enumerate(words):
        if current and float(word.start) - float(current[-1].end) >= PAUSE_SECONDS:
            flush()
        current.append(word)
        follows = words[i + 1] if i + 1 < len(words) else None
        if (word.word.strip().endswith(SENTENCE_END) and follows is not None) or (
            float(word.end) - float(current[0].start) >= MAX_PIECE_SECONDS
        ):
            flush()
    flush()
    return pieces
