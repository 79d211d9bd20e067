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

Control works as in the sequential backends: we drive the batches ourselves (VAD, chunk
packing and word timing are faster-whisper's own functions; `BatchedInferencePipeline.forward`
decodes a batch), and the start of every batch is a safe point. A checkpoint holds the whole
file's speech map (Silero VAD is stateful: run again on the tail only, it cuts differently),
how many chunks are done, the batch size and `last_speech_timestamp`, so a resumed file is
packed and decoded exactly as the clean run. Features are computed per batch, not for the
whole file: each chunk's features depend on that chunk alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import faults
from .base import (
    FRAMES_PER_SECOND,
    SAMPLE_RATE,
    Audio,
    Checkpoint,
    Segment,
    SegmentHook,
    TranscribeOptions,
    Transcript,
    WindowHook,
    announce,
    as_audio,
    drop_invented,
)
from .faster_whisper import CT2Model, raise_as_torch_oom
from .vad import VadOptions, speech_regions
from .word_cues import pieces


def transcribe_batched(
    model: CT2Model,
    audio: np.ndarray | Audio,
    options: TranscribeOptions,
    *,
    resume: Checkpoint | None = None,
    on_window: WindowHook | None = None,
    on_segment: SegmentHook | None = None,
) -> Transcript:
    """Transcribe `audio` in VAD-cut chunks, `options.batch_size` chunks per model call.

    `on_window` runs before each batch with the checkpoint of everything finished; if it
    raises, the stage stops with `TranscriptionStopped` carrying that checkpoint. A resume
    keeps the checkpoint's batch size (the same batches, the same numbers), unless
    `options` asks for fewer chunks per call (the pipeline's out-of-memory retry).
    """
    try:
        return _run(model, as_audio(audio), options, resume, on_window, on_segment)
    except RuntimeError as exc:
        raise_as_torch_oom(exc)
        raise


def _run(
    model: CT2Model,
    audio: Audio,
    options: TranscribeOptions,
    resume: Checkpoint | None,
    on_window: WindowHook | None,
    on_segment: SegmentHook | None,
) -> Transcript:
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import restore_speech_timestamps

    from .faster_whisper_loop import library_options

    fw = model.model
    total = audio.duration
    speech = _speech(audio, resume)
    plan = _chunk_plan(speech) if speech else []
    meta = [m for _regions, m in plan]
    batch = options.batch_size
    if resume is not None and resume.batch_size:
        batch = min(resume.batch_size, batch)
    language = (resume.language if resume else None) or _language(fw, options, audio, plan)
    tokenizer = Tokenizer(
        fw.hf_tokenizer, fw.model.is_multilingual, task=options.task, language=language
    )
    opts = library_options(
        tokenizer,
        options,
        temperatures=[options.temperature[0]],  # no fallback in batched mode
        word_timestamps=True,  # always: the word times cut each chunk into cues
        without_timestamps=True,
        condition_on_previous_text=False,
        max_initial_timestamp=0.0,
        prompt_reset_on_temperature=0.5,
    )
    pipeline = BatchedInferencePipeline(fw)
    pipeline.last_speech_timestamp = resume.last_speech if resume else 0.0
    done: list[Segment] = list(resume.segments) if resume else []
    spans = tuple((int(r["start"]), int(r["end"])) for r in speech)
    i = resume.chunks_done if resume else 0
    batches = 0
    while i < len(meta):
        seek = _original_start(speech, meta[i]["offset"])
        checkpoint = Checkpoint(
            seek=seek,
            segments=tuple(done),
            frame=round(seek * FRAMES_PER_SECOND),
            last_speech=pipeline.last_speech_timestamp,
            language=language,
            speech=spans,
            chunks_done=i,
            batch_size=batch,
        )
        batches += 1
        faults.maybe_fail("transcribe")
        announce(checkpoint, total, on_window)
        chunks = [_chunk_audio(audio, regions) for regions, _m in plan[i : i + batch]]
        features = np.stack([pad_or_trim(fw.feature_extractor(c)[..., :-1]) for c in chunks])
        outputs = pipeline.forward(features, tokenizer, meta[i : i + batch], opts)
        segments = [_fw_segment(s, opts.temperatures[0]) for out in outputs for s in out]
        for s in restore_speech_timestamps(segments, speech, SAMPLE_RATE):
            done.extend(_pieces(s, 0.0))
            if on_segment is not None and total and done:
                on_segment(min(1.0, done[-1].end / total))
        i += batch
    return Transcript(
        segments=drop_invented(tuple(done), options), language=language, windows=batches
    )


def _speech(audio: Audio, resume: Checkpoint | None) -> list[dict]:
    """The whole file's speech regions (samples): the checkpoint's, or Silero VAD's with the
    library's batched settings (vad.py: the same model and rules as
    `faster_whisper.vad.get_speech_timestamps`, over a second pass that reads the file
    forward, so it is never held whole; VAD costs ~0.2 % of the audio's duration)."""
    if resume is not None and resume.speech is not None:
        return [{"start": a, "end": b} for a, b in resume.speech]
    if audio.length_within(SAMPLE_RATE // 10) < SAMPLE_RATE // 10:  # VAD needs some audio
        return []
    options = VadOptions(max_speech_duration_s=CHUNK_SECONDS, min_silence_duration_ms=160)
    return [{"start": a, "end": b} for a, b in speech_regions(audio.reopen(), options)]


def _chunk_plan(speech: list[dict]) -> list[tuple[list[tuple[int, int]], dict]]:
    """`faster_whisper.vad.collect_chunks` as a plan: per chunk, the speech regions whose
    samples it joins and the library's metadata for it (its quirks kept: a region that
    starts a new chunk is not in that chunk's "segments"). The samples are read later."""
    limit = CHUNK_SECONDS * SAMPLE_RATE
    plan: list[tuple[list[tuple[int, int]], dict]] = []
    regions: list[tuple[int, int]] = []
    segments: list[dict] = []
    length = before = 0
    for region in speech:
        size = region["end"] - region["start"]
        if length + size > limit:
            meta = {"offset": before / SAMPLE_RATE, "duration": length / SAMPLE_RATE}
            plan.append((regions, {**meta, "segments": segments}))
            before += length
            regions, segments, length = [], [], 0
        else:
            segments.append(region)
        regions.append((region["start"], region["end"]))
        length += size
    meta = {"offset": before / SAMPLE_RATE, "duration": length / SAMPLE_RATE}
    plan.append((regions, {**meta, "segments": segments}))
    return plan


def _chunk_audio(audio: Audio, regions: list[tuple[int, int]]) -> np.ndarray:
    parts = [audio.read(a, b - a) for a, b in regions]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _language(fw: Any, options: TranscribeOptions, audio: Audio, plan: list) -> str:
    """As the library's batched transcribe decides it: over the chunks' features, of which
    it looks at the first 30 s (read here on a pass of their own)."""
    if not fw.model.is_multilingual:
        return "en"
    if options.language:
        return options.language
    first, features = audio.reopen(), []
    for regions, _meta in plan:
        features.append(fw.feature_extractor(_chunk_audio(first, regions))[..., :-1])
        if sum(f.shape[-1] for f in features) >= fw.feature_extractor.nb_max_frames:
            break
    dummy = np.full((fw.model.n_mels, 1), -1.5, dtype="float32")  # empty audio
    language, _probability, _all = fw.detect_language(
        features=np.concatenate([*features, dummy], axis=1)
    )
    return str(language)


def _fw_segment(s: dict, temperature: float) -> Any:
    """One decoded piece as the library's generator yields it (restore_speech_timestamps
    reads and rewrites these)."""
    from faster_whisper.transcribe import Segment as FwSegment
    from faster_whisper.transcribe import Word

    return FwSegment(
        id=0,
        seek=s["seek"],
        start=round(s["start"], 3),
        end=round(s["end"], 3),
        text=s["text"],
        tokens=s["tokens"],
        avg_logprob=s["avg_logprob"],
        compression_ratio=s["compression_ratio"],
        no_speech_prob=s["no_speech_prob"],
        words=[Word(**w) for w in s["words"]],
        temperature=temperature,
    )


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


def _pieces(segment: Any, offset: float) -> list[Segment]:
    """One chunk's text as subtitle-sized segments, cut where its words say (the same rule
    as batched openai-whisper, `word_cues.pieces`); without word times it stays one."""
    meta = dict(
        no_speech_prob=float(segment.no_speech_prob), avg_logprob=float(segment.avg_logprob)
    )
    words = [
        (w.word, float(w.start), float(w.end), float(w.probability)) for w in segment.words or ()
    ]
    if not words:
        return [
            Segment(
                start=offset + float(segment.start),
                end=offset + float(segment.end),
                text=segment.text.strip(),
                **meta,
            )
        ]
    return pieces(words, offset, **meta)
