"""Batched long-form transcription with openai-whisper: VAD chunks, N mels per decode call.

Why: sequential whisper decodes one 30 s window after another, each waiting for the text of
the one before (its prompt), which leaves a GPU mostly idle; faster-whisper's batched mode
(batched.py) fixes that but needs CTranslate2, whose CUDA 12 wheels do not load
on a CUDA 13 machine. openai-whisper's `DecodingTask` already decodes a batch of mels, so:

* the Silero VAD (vad.py, onnxruntime only) finds speech and joins it into spans of
  at most 30 s of the original audio that start and end at silences;
* `batch_size` spans at a time: log-mel of each (on the model's device), one
  `whisper.decode` call on the stacked mels, text only (no timestamp tokens: asking for
  segment timestamps inside a chunk lost words, see batched.py), greedy at the first
  temperature, fp16 on CUDA, no prompt between chunks and no temperature fallback;
* word times per chunk from whisper's own `add_word_timestamps`, fed the encoder output the
  decode call returned (a stand-in model whose forward runs only the decoder), so alignment
  costs a decoder pass, not a second encoder pass; the words are cut into segments at
  sentence ends and pauses (word_cues.py).

Control: before each batch the checkpoint (every finished segment, the spans of the whole
file, the spans done, the batch size) goes to `on_window` through `asr.announce`; if the
hook raises, the stage stops with `TranscriptionStopped`. A resume takes the spans and
batch size from the checkpoint instead of cutting again, so it decodes exactly the batches
a clean run would have and the output is identical (unless a smaller batch is asked for,
as the pipeline's retry after out-of-memory does: then the smaller one is used).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
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
from .vad import chunk_spans, speech_regions
from .word_cues import pieces

CHUNK_SECONDS = 30.0


def transcribe_whisper_batched(
    model: Any,
    audio: np.ndarray | Audio,
    options: TranscribeOptions,
    *,
    resume: Checkpoint | None = None,
    on_window: WindowHook | None = None,
    on_segment: SegmentHook | None = None,
    decoding: Mapping[str, Any] | None = None,
) -> Transcript:
    """Transcribe `audio` (16 kHz mono float32) with a loaded openai-whisper `model`, in
    VAD-cut chunks of <= 30 s, `options.batch_size` chunks per `whisper.decode` call.

    `on_window` runs before each batch with the checkpoint of everything finished (may stop
    the stage); `on_segment` gets the fraction done after each batch. `decoding` overrides
    fields of `whisper.DecodingOptions` (the GPU check pins a token budget with it). With
    `options.word_timestamps` False a chunk is one cue and no alignment pass runs.
    """
    import torch

    source = as_audio(audio)
    total = source.duration
    if resume is not None and resume.speech is not None:
        spans = list(resume.speech)
        # the checkpoint's size gives identical output; a smaller one asked for (the
        # pipeline's lighter retry after out-of-memory) wins over identity
        batch_size = min(resume.batch_size or options.batch_size, options.batch_size or 10**6)
        batch_size = max(1, batch_size)
        next_chunk = resume.chunks_done
        previous = resume.segments
        language = resume.language or options.language
    else:  # a fresh file, or a checkpoint of another backend (no spans): start over
        spans = _spans(source)
        batch_size = max(1, options.batch_size)
        next_chunk = 0
        previous = ()
        language = options.language
    done: list[Segment] = []
    batches = 0
    decoder = _BatchDecoder(model, options, decoding or {})
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # triton / fp16 notices are not news
        while next_chunk < len(spans):
            seek = spans[next_chunk][0] / SAMPLE_RATE
            checkpoint = Checkpoint(
                seek=seek,
                segments=previous + tuple(done),
                frame=round(seek * FRAMES_PER_SECOND),
                language=language,
                speech=tuple(spans),
                chunks_done=next_chunk,
                batch_size=batch_size,
            )
            batches += 1
            faults.maybe_fail("transcribe")
            announce(checkpoint, total, on_window)
            batch = spans[next_chunk : next_chunk + batch_size]
            for segments, lang in decoder.decode([source.read(a, b - a) for a, b in batch], batch):
                done.extend(segments)
                language = language or lang
            next_chunk += len(batch)
            if on_segment is not None and total:
                on_segment(min(1.0, spans[next_chunk - 1][1] / SAMPLE_RATE / total))
    return Transcript(
        segments=drop_invented(previous + tuple(done), options),
        language=language,
        windows=batches,
    )


def _spans(audio: Audio) -> list[tuple[int, int]]:
    """The whole file's chunks, (start, end) in samples; none for audio too short for VAD.
    The VAD reads the file on a pass of its own, forward, never holding it whole."""
    if audio.length_within(SAMPLE_RATE // 10) < SAMPLE_RATE // 10:
        return []
    return chunk_spans(speech_regions(audio.reopen()), CHUNK_SECONDS)


class _BatchDecoder:
    """One model's batched decode + word alignment, with the options fixed for the file."""

    def __init__(
        self, model: Any, options: TranscribeOptions, overrides: Mapping[str, Any]
    ) -> None:
        import whisper

        self.model = model
        self.options = options
        fp16 = bool(options.fp16) and model.device.type == "cuda"
        self.dtype = "float16" if fp16 else "float32"
        beam = options.beam_size if options.beam_size and options.beam_size > 1 else None
        self.decoding = whisper.DecodingOptions(
            task=options.task,
            language=options.language,
            temperature=options.temperature[0] if options.temperature else 0.0,
            beam_size=beam,
            without_timestamps=True,
            fp16=fp16,
        )
        self.decoding = dataclasses.replace(self.decoding, **overrides)
        self._tokenizers: dict[str | None, Any] = {}

    def tokenizer(self, language: str | None) -> Any:
        from whisper.tokenizer import get_tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = get_tokenizer(
                self.model.is_multilingual,
                num_languages=self.model.num_languages,
                language=language,
                task=self.options.task,
            )
        return self._tokenizers[language]

    def mels(self, chunks: list[np.ndarray]) -> Any:
        """(N, n_mels, 3000) log-mel of each chunk padded to 30 s, as `transcribe` pads."""
        import torch
        import whisper

        n_samples = whisper.audio.N_SAMPLES
        rows = [
            whisper.log_mel_spectrogram(
                whisper.pad_or_trim(torch.from_numpy(np.ascontiguousarray(c)), n_samples),
                self.model.dims.n_mels,
                device=self.model.device,
            )
            for c in chunks
        ]
        return torch.stack(rows).to(getattr(torch, self.dtype))

    def decode(
        self, chunks: list[np.ndarray], spans: list[tuple[int, int]]
    ) -> list[tuple[list[Segment], str | None]]:
        """Each chunk's segments (file times) and detected language, in chunk order."""
        import whisper

        mel = self.mels(chunks)
        results = whisper.decode(self.model, mel, self.decoding)
        out = []
        for i, result in enumerate(results):
            start = spans[i][0] / SAMPLE_RATE
            frames = min(len(chunks[i]) // whisper.audio.HOP_LENGTH, mel.shape[-1])
            words = self.words(result, mel[i], frames) if self.options.word_timestamps else []
            meta = dict(
                no_speech_prob=float(result.no_speech_prob), avg_logprob=float(result.avg_logprob)
            )
            segments = pieces(words, start, **meta)
            if not words and result.text.strip():  # no word times: the chunk is one segment
                end = start + len(chunks[i]) / SAMPLE_RATE
                segments = [Segment(start, end, result.text.strip(), **meta)]
            out.append((segments, result.language))
        return out

    def words(self, result: Any, mel: Any, frames: int) -> list[tuple[str, float, float, float]]:
        """Word times from whisper's aligner, reusing this chunk's encoder output."""
        from whisper.timing import add_word_timestamps

        tokenizer = self.tokenizer(result.language)
        tokens = [t for t in result.tokens if t < tokenizer.eot]
        if not tokens:
            return []
        segment = {"seek": 0, "start": 0.0, "end": frames / FRAMES_PER_SECOND, "tokens": tokens}
        add_word_timestamps(
            segments=[segment],
            model=_DecoderOnly(self.model, result.audio_features),
            tokenizer=tokenizer,
            mel=mel,
            num_frames=frames,
            last_speech_timestamp=0.0,
        )
        return [
            (w["word"], float(w["start"]), float(w["end"]), float(w["probability"]))
            for w in segment["words"]
        ]


class _DecoderOnly:
    """What `whisper.timing.find_alignment` needs of a model, with the forward pass reduced
    to the decoder over the encoder output the decode call already computed."""

    def __init__(self, model: Any, audio_features: Any) -> None:
        self.dims = model.dims
        self.decoder = model.decoder
        self.device = model.device
        self.alignment_heads = model.alignment_heads
        self._features = audio_features.unsqueeze(0)

    def __call__(self, mel: Any, tokens: Any) -> Any:
        return self.decoder(tokens, self._features)
