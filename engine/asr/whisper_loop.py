"""Our copy of openai-whisper's transcribe loop (whisper/transcribe.py, 20250625), with the
state between windows made explicit, so a stopped file resumes exactly where it was.

Why a copy and not the library's `transcribe` with hooks: the library keeps what the next
window depends on in locals of its loop (the prompt's token ids since the last reset, the
seek, `last_speech_timestamp`). Reading them through stack frames was fragile, and they
cannot be written back: resuming through `clip_timestamps` + `initial_prompt` re-encoded
the prompt from text without its timestamp tokens (tiny.en then stopped emitting
timestamps) and started `last_speech_timestamp` at 0. Here the state is a value, taken at
the start of every window (the safe point) and given back on resume.

Kept as the library does it: the temperature fallback, timestamp splitting, word timing
and the seek after the last word, and the log-mel's dynamic range clamped to the whole
file's loudest value (found by a first pass, loudness.py, and kept in the checkpoint).
Changed: the log-mel is computed per window from that window's samples only (`log_mel`,
read forward from an `Audio`: a file is never held whole, issue 14.5). With the same
samples and options, a clean run equals the library's `transcribe` segment for segment
(tests/test_library_parity.py); stretches of speech it skipped are decoded again after the
last window unless `fill_gaps` is off (gaps.py).

Left out, because subq never uses them: `initial_prompt`, `carry_initial_prompt`,
`clip_timestamps`, `hallucination_silence_threshold`, verbose printing. Changed: a window
that falls back to sampling seeds torch's generator from the window and the
temperature (`window_seed`), so fallback is reproducible; the library's run is unseeded.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .base import (
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    PROMPT_TOKENS,
    SAMPLE_RATE,
    Audio,
    Checkpoint,
    Segment,
    TranscribeOptions,
    Transcript,
    WindowHook,
    announce,
    as_audio,
    drop_invented,
    stft_input,
    window_seed,
    words_of,
)
from .gaps import fill as fill_gaps
from .loudness import loudest as file_loudest
from .loudness import whisper_frames

COMPRESSION_RATIO_THRESHOLD = 2.4  # the library's default, which subq never changes
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


def transcribe_whisper(
    model: Any,
    audio: np.ndarray | Audio,
    options: TranscribeOptions,
    *,
    resume: Checkpoint | None = None,
    on_window: WindowHook | None = None,
    at_window: Callable[[], None] | None = None,
) -> Transcript:
    """Transcribe `audio` window by window from `resume` (or the start); `on_window` runs at
    the start of every window with the checkpoint of everything before it."""
    import torch
    from whisper.audio import N_FRAMES, pad_or_trim
    from whisper.tokenizer import get_tokenizer

    source = as_audio(audio)
    n_mels = model.dims.n_mels
    dtype = torch.float16 if options.fp16 and model.device.type != "cpu" else torch.float32
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # triton notices are not news
        loudest = resume.loudest if resume else None
        if loudest is None:
            loudest = file_loudest(source, partial(log10_mel, n_mels=n_mels), whisper_frames)
        language = (resume.language if resume else None) or options.language
        probability = resume.language_probability if resume else None
        if language is None:
            first = log_mel(stft_input(source, 0, N_FRAMES), n_mels, loudest)
            language, probability = _detect_language(model, first.to(model.device), dtype)
        tokenizer = get_tokenizer(
            model.is_multilingual,
            num_languages=model.num_languages,
            language=language,
            task=options.task,
        )
        state = _State(resume, loudest)

        def decode(reader: Audio, state: _State, opts: TranscribeOptions, size: int) -> None:
            window = log_mel(stft_input(reader, state.frame, size), n_mels, loudest)
            window = pad_or_trim(window, N_FRAMES).to(model.device).to(dtype)
            _one_window(model, tokenizer, window, size, state, opts, language, dtype)

        total = source.duration
        while True:
            # the file's frames, as far as this window can see (the whole file's are L // 160)
            content = source.length_within((state.frame + N_FRAMES + 1) * HOP_LENGTH)
            size = min(N_FRAMES, content // HOP_LENGTH - state.frame)
            if size <= 0:
                break
            if at_window is not None:
                at_window()
            announce(state.checkpoint(language, probability), total, on_window)
            state.windows += 1
            decode(source, state, options, size)
        found, refilled = state.segments, ()
        if options.fill_gaps:
            unprompted = dataclasses.replace(options, condition_on_previous_text=False)

            def redecode(reader: Audio, start: int, end: int) -> list[Segment]:
                stretch = _State(None, loudest)
                stretch.frame, stretch.last_speech = start, start / FRAMES_PER_SECOND
                while (size := min(N_FRAMES, end - stretch.frame)) > 0:
                    before = stretch.frame
                    decode(reader, stretch, unprompted, size)
                    if stretch.frame <= before:  # a window that did not move on ends it
                        break
                return stretch.segments

            found, refilled = fill_gaps(found, source, redecode)
    return Transcript(
        segments=drop_invented(tuple(found), options),
        language=language,
        language_probability=probability,
        windows=state.windows,
        stats={"fallbacks": state.fallbacks},
        refilled=refilled,
    )


def log10_mel(samples: np.ndarray, n_mels: int) -> Any:
    """openai-whisper's `log_mel_spectrogram` up to its clamp, for the frames `samples`
    (from `stft_input`, so no centre padding here) hold."""
    import torch
    from whisper.audio import HOP_LENGTH as HOP
    from whisper.audio import N_FFT as FFT
    from whisper.audio import mel_filters

    x = torch.from_numpy(samples)
    stft = torch.stft(x, FFT, HOP, window=torch.hann_window(FFT), center=False, return_complex=True)
    mel_spec = mel_filters(x.device, n_mels) @ (stft.abs() ** 2)
    return torch.clamp(mel_spec, min=1e-10).log10()


def log_mel(samples: np.ndarray, n_mels: int, loudest: float) -> Any:
    """One window's log-mel as the library's whole-file log-mel holds it: the dynamic range
    clamped to `loudest` (the whole file's, loudness.py) minus 8."""
    import torch

    log_spec = torch.clamp(log10_mel(samples, n_mels), min=loudest - 8.0)
    return (log_spec + 4.0) / 4.0


class _State:
    """What the next window depends on; a checkpoint is a copy of it."""

    def __init__(self, resume: Checkpoint | None, loudest: float) -> None:
        self.loudest = loudest
        self.fallbacks = 0  # windows decoded by sampling, not greedily
        self.frame = resume.frame if resume else 0
        self.prompt: list[int] = list(resume.prompt) if resume else []
        self.last_speech = resume.last_speech if resume else 0.0
        self.segments: list[Segment] = list(resume.segments) if resume else []
        self.windows = 0

    def checkpoint(self, language: str | None, probability: float | None = None) -> Checkpoint:
        return Checkpoint(
            seek=self.frame / FRAMES_PER_SECOND,
            segments=tuple(self.segments),
            frame=self.frame,
            prompt=tuple(self.prompt[-PROMPT_TOKENS:]),
            last_speech=self.last_speech,
            language=language,
            loudest=self.loudest,
            language_probability=probability,
        )


def _detect_language(model: Any, mel_segment: Any, dtype: Any) -> tuple[str, float | None]:
    if not model.is_multilingual:
        return "en", None
    _, probs = model.detect_language(mel_segment.to(dtype))
    language = max(probs, key=probs.get)
    return str(language), float(probs[language])


def _decode_with_fallback(
    model: Any,
    window: Any,
    state: _State,
    options: TranscribeOptions,
    language: str,
    dtype: Any,
) -> Any:
    """The library's `decode_with_fallback`, its sampling seeded per window and temperature."""
    import torch
    from whisper.decoding import DecodingOptions, decode

    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    result = None
    for t in options.temperature:
        kwargs: dict[str, Any] = dict(
            task=options.task,
            language=language,
            fp16=dtype == torch.float16,
            prompt=list(state.prompt[-PROMPT_TOKENS:]),
        )
        if t == 0 and options.beam_size and options.beam_size > 1:
            kwargs["beam_size"] = options.beam_size
        decoding = DecodingOptions(**kwargs, temperature=t)
        if t > 0:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(window_seed(state.frame, t))
                result = decode(model, window, decoding)
        else:
            result = decode(model, window, decoding)
        needs_fallback = (
            result.compression_ratio > COMPRESSION_RATIO_THRESHOLD
            or result.avg_logprob < options.logprob_threshold
        )
        if (
            result.no_speech_prob > options.no_speech_threshold
            and result.avg_logprob < options.logprob_threshold
        ):
            needs_fallback = False  # silence
        if not needs_fallback:
            break
    return result


def _one_window(
    model: Any,
    tokenizer: Any,
    window: Any,
    size: int,
    state: _State,
    options: TranscribeOptions,
    language: str,
    dtype: Any,
) -> None:
    """Decode the window at `state.frame` and move the state past it, as the library does."""
    import torch
    from whisper.timing import add_word_timestamps
    from whisper.utils import get_end

    input_stride = 2  # mel frames per output token (N_FRAMES // n_audio_ctx)
    time_precision = input_stride * HOP_LENGTH / SAMPLE_RATE  # 0.02 s per timestamp token
    seek = state.frame
    time_offset = float(seek * HOP_LENGTH / SAMPLE_RATE)
    duration_of_window = size * HOP_LENGTH / SAMPLE_RATE
    result = _decode_with_fallback(model, window, state, options, language, dtype)
    state.fallbacks += result.temperature > 0
    tokens = torch.tensor(result.tokens)
    should_skip = result.no_speech_prob > options.no_speech_threshold
    if result.avg_logprob > options.logprob_threshold:
        should_skip = False  # confident text despite the no-speech probability
    if should_skip:
        state.frame = seek + size
        return

    def new_segment(start: float, end: float, piece: Any) -> dict[str, Any]:
        ids = piece.tolist()
        return {
            "seek": state.frame,
            "start": start,
            "end": end,
            "tokens": ids,
            "text": tokenizer.decode([t for t in ids if t < tokenizer.eot]),
            "avg_logprob": result.avg_logprob,
            "no_speech_prob": result.no_speech_prob,
        }

    current: list[dict[str, Any]] = []
    timestamp_tokens = tokens.ge(tokenizer.timestamp_begin)
    single_timestamp_ending = timestamp_tokens[-2:].tolist() == [False, True]
    consecutive = torch.where(timestamp_tokens[:-1] & timestamp_tokens[1:])[0]
    consecutive.add_(1)
    if len(consecutive) > 0:  # pairs of timestamp tokens: one segment between each pair
        slices = consecutive.tolist()
        if single_timestamp_ending:
            slices.append(len(tokens))
        last_slice = 0
        for current_slice in slices:
            piece = tokens[last_slice:current_slice]
            start_pos = piece[0].item() - tokenizer.timestamp_begin
            end_pos = piece[-1].item() - tokenizer.timestamp_begin
            current.append(
                new_segment(
                    time_offset + start_pos * time_precision,
                    time_offset + end_pos * time_precision,
                    piece,
                )
            )
            last_slice = current_slice
        if single_timestamp_ending:
            seek += size  # no speech after the last timestamp
        else:  # drop the unfinished segment; go back to the last timestamp
            seek += (tokens[last_slice - 1].item() - tokenizer.timestamp_begin) * input_stride
    else:
        duration = duration_of_window
        timestamps = tokens[timestamp_tokens.nonzero().flatten()]
        if len(timestamps) > 0 and timestamps[-1].item() != tokenizer.timestamp_begin:
            duration = (timestamps[-1].item() - tokenizer.timestamp_begin) * time_precision
        current.append(new_segment(time_offset, time_offset + duration, tokens))
        seek += size

    if options.word_timestamps:
        add_word_timestamps(
            segments=current,
            model=model,
            tokenizer=tokenizer,
            mel=window,
            num_frames=size,
            prepend_punctuations=PREPEND_PUNCTUATIONS,
            append_punctuations=APPEND_PUNCTUATIONS,
            last_speech_timestamp=state.last_speech,
        )
        if not single_timestamp_ending:
            last_word_end = get_end(current)
            if last_word_end is not None and last_word_end > time_offset:
                seek = round(last_word_end * FRAMES_PER_SECOND)
        last_word_end = get_end(current)
        if last_word_end is not None:
            state.last_speech = last_word_end

    for segment in current:  # instantaneous or empty: kept, but without text or tokens
        if segment["start"] == segment["end"] or segment["text"].strip() == "":
            segment["text"] = ""
            segment["tokens"] = []
            segment["words"] = []
        state.segments.append(
            Segment(
                start=float(segment["start"]),
                end=float(segment["end"]),
                text=segment["text"].strip(),
                no_speech_prob=float(result.no_speech_prob),
                avg_logprob=float(result.avg_logprob),
                words=words_of(segment.get("words")),
            )
        )
        state.prompt.extend(segment["tokens"])
    if not options.condition_on_previous_text or result.temperature > 0.5:
        state.prompt = []  # no prompt after a hot sample
    del state.prompt[:-PROMPT_TOKENS]
    state.frame = seek
