"""Our copy of faster-whisper's sequential loop (`WhisperModel.generate_segments` and
`generate_with_fallback`, faster-whisper 1.2.1), with the state between windows explicit.

Why a copy: as with openai-whisper (whisper_loop.py), the state the next window depends on
lives in the generator's locals: the prompt's token ids since the last reset, the seek,
`last_speech_timestamp`. Resuming through `clip_timestamps` + a text `initial_prompt` lost
the timestamp tokens, restarted `last_speech_timestamp` at 0 and detected the language
again at the resume point. Here the state is a value taken at each window's start.

The per-window pieces stay the library's own methods (`encode`, `get_prompt`,
`_split_segments_by_timestamps`, `add_word_timestamps`, the feature extractor), checked
against faster-whisper 1.2.1; tests/test_resume_identity.py compares a clean run with the
library's `transcribe` so a change there shows. Features are computed per window from that
window's samples, read forward from an `Audio` (never the whole file: issue 14.5), with the
dynamic range clamped to the whole file's loudest value, found by a first pass
(loudness.py says why) and kept in the checkpoint.

Fallback sampling is seeded per window (`window_seed`): the same file, window and
temperature always sample the same, clean run or resumed. CTranslate2 has no per-call seed
(`set_random_seed` reaches a worker thread's generator only the first time it samples), so
a window samples either on the model as loaded, every token drawn by us over the logits it
returns (ct2_sampling.py: on a GPU, where a second copy of the weights is what subq must
not spend), or on a fresh replica created after setting the seed (on the CPU, where the
replica loads in a fraction of a second and sampling in place costs seconds a window).
`faster_whisper.fallback_sampler` decides.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .base import (
    HOP_LENGTH,
    PROMPT_TOKENS,
    Audio,
    Checkpoint,
    Segment,
    SegmentHook,
    TranscribeOptions,
    WindowHook,
    announce,
    stft_input,
    window_seed,
    words_of,
)
from .ct2_sampling import Vocabulary, seeded_sample
from .loudness import faster_whisper_frames, loudest


def library_options(tokenizer: Any, options: TranscribeOptions, **overrides: Any) -> Any:
    """faster-whisper's TranscriptionOptions: its own `transcribe` defaults, then ours."""
    from faster_whisper.transcribe import (
        TranscriptionOptions,
        WhisperModel,
        get_suppressed_tokens,
    )

    defaults = {
        name: p.default
        for name, p in inspect.signature(WhisperModel.transcribe).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    ours: dict[str, Any] = dict(
        beam_size=options.beam_size if options.beam_size and options.beam_size > 1 else 1,
        best_of=1,  # openai-whisper's transcribe samples once per fallback temperature too
        condition_on_previous_text=options.condition_on_previous_text,
        no_speech_threshold=options.no_speech_threshold,
        log_prob_threshold=options.logprob_threshold,
        temperatures=list(options.temperature),
        word_timestamps=options.word_timestamps,
        initial_prompt=None,
        clip_timestamps="0",
        multilingual=False,
    )
    ours.update(overrides)
    fields = {
        name: ours[name] if name in ours else defaults[name]
        for name in TranscriptionOptions.__dataclass_fields__
    }
    if fields["suppress_tokens"]:
        fields["suppress_tokens"] = get_suppressed_tokens(tokenizer, fields["suppress_tokens"])
    return TranscriptionOptions(**fields)


def log10_mel(fe: Any, samples: np.ndarray) -> np.ndarray:
    """faster-whisper's `FeatureExtractor.__call__` up to its clamp, for the frames that
    `samples` (from `stft_input`, so no centre padding here) hold."""
    window = np.hanning(fe.n_fft + 1)[:-1].astype("float32")
    stft = fe.stft(
        samples, fe.n_fft, fe.hop_length, window=window, center=False, return_complex=True
    ).astype("complex64")
    mel_spec = fe.mel_filters @ (np.abs(stft) ** 2)
    return np.log10(np.clip(mel_spec, a_min=1e-10, a_max=None))


def features(fe: Any, samples: np.ndarray, loudest: float) -> np.ndarray:
    """One window's features as the library's whole-file features hold them: the dynamic
    range clamped to `loudest` (the whole file's, from `file_loudest`) minus 8."""
    log_spec = np.maximum(log10_mel(fe, samples), loudest - 8.0)
    return (log_spec + 4.0) / 4.0


def file_loudest(fe: Any, audio: Audio) -> float:
    return loudest(audio, partial(log10_mel, fe), faster_whisper_frames)


class Ct2Loop:
    """One file's sequential decoding: the state, and a window at a time."""

    def __init__(
        self,
        fw: Any,
        audio: Audio,
        options: TranscribeOptions,
        resume: Checkpoint | None,
        new_replica: Callable[[], Any] | None = None,
    ) -> None:
        from faster_whisper.tokenizer import Tokenizer

        self.fw = fw  # faster_whisper.WhisperModel
        # None: fallback windows sample on the model as loaded (ct2_sampling); else each
        # samples on a fresh replica seeded first (faster_whisper.fallback_sampler says which)
        self.new_replica = new_replica
        self.options = options
        self.audio = audio
        self.frame = resume.frame if resume else 0
        self.prompt: list[int] = list(resume.prompt) if resume else []
        self.last_speech = resume.last_speech if resume else 0.0
        self.segments: list[Segment] = list(resume.segments) if resume else []
        self.windows = 0
        self.fallbacks = 0  # windows decoded by sampling, not greedily
        known = resume.loudest if resume else None
        self.loudest = known if known is not None else file_loudest(fw.feature_extractor, audio)
        self.probability = resume.language_probability if resume else None
        self.language = (resume.language if resume else None) or self._language()
        self.tokenizer = Tokenizer(
            fw.hf_tokenizer, fw.model.is_multilingual, task=options.task, language=self.language
        )
        self.opts = library_options(self.tokenizer, options)
        tok = self.tokenizer
        self.vocabulary = Vocabulary(
            tok.sot, tok.eot, tok.no_timestamps, tuple(self.opts.suppress_tokens or ())
        )

    def _language(self) -> str:
        if not self.fw.model.is_multilingual:
            return "en"
        if self.options.language:
            return self.options.language
        fe = self.fw.feature_extractor  # the library looks at the first 30 s
        size = min(fe.nb_max_frames, self.audio.length_within(fe.n_samples) // fe.hop_length + 1)
        first = features(fe, stft_input(self.audio, 0, size), self.loudest)
        language, probability, _all = self.fw.detect_language(features=first)
        self.probability = float(probability)
        return str(language)

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            seek=self.frame / self.fw.frames_per_second,
            segments=tuple(self.segments),
            frame=self.frame,
            prompt=tuple(self.prompt[-PROMPT_TOKENS:]),
            last_speech=self.last_speech,
            language=self.language,
            loudest=self.loudest,
            language_probability=self.probability,
        )

    def run(
        self,
        on_window: WindowHook | None,
        on_segment: SegmentHook | None,
        at_window: Callable[[], None],
        keep: Callable[[float, float], bool],
    ) -> None:
        """Every window to the end; `keep(temperature, avg_logprob)` filters segments."""
        total = self.audio.duration
        while self._size() > 0:
            at_window()
            announce(self.checkpoint(), total, on_window)
            self.windows += 1
            for segment in self.window(keep):
                self.segments.append(segment)
                if on_segment is not None and total:
                    on_segment(min(1.0, segment.end / total))

    def _size(self, end: int | None = None) -> int:
        """Frames in the window at `self.frame` (the whole file has L // 160), up to `end`."""
        most = self.fw.feature_extractor.nb_max_frames
        content = self.audio.length_within((self.frame + most + 1) * HOP_LENGTH) // HOP_LENGTH
        return min(most, content - self.frame, (end if end is not None else content) - self.frame)

    def redecode(self, audio: Audio, start: int, end: int) -> list[Segment]:
        """Frames [start, end) decoded again on their own, without the previous-text prompt
        (gaps.py: where greedy decoding with the prompt skipped speech); the loop's state is
        put back afterwards. `audio` is a reader of its own (the loop's reads moved on)."""
        saved = (self.audio, self.frame, self.prompt, self.last_speech, self.opts)
        self.audio, self.frame, self.prompt = audio, start, []
        self.last_speech = start / self.fw.frames_per_second
        self.opts = library_options(self.tokenizer, self.options, condition_on_previous_text=False)
        found: list[Segment] = []
        try:
            while self._size(end) > 0:
                before = self.frame
                found.extend(self.window(lambda _t, _lp: True, end))
                if self.frame <= before:  # a window that did not move on ends the stretch
                    break
        finally:
            self.audio, self.frame, self.prompt, self.last_speech, self.opts = saved
        return found

    def window(self, keep: Callable[[float, float], bool], end: int | None = None) -> list[Segment]:
        """Decode the window at `self.frame` and move the state past it, as the library does."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_end

        fw, opts, tokenizer = self.fw, self.opts, self.tokenizer
        per_frame = fw.feature_extractor.time_per_frame
        seek = self.frame
        time_offset = seek * per_frame
        size = self._size(end)
        duration = size * per_frame
        samples = stft_input(self.audio, seek, size)
        window = features(fw.feature_extractor, samples, self.loudest)
        encoder_output = fw.encode(pad_or_trim(window))
        prompt = fw.get_prompt(tokenizer, self.prompt, without_timestamps=opts.without_timestamps)
        result, avg_logprob, temperature, _ratio = self._generate(encoder_output, prompt)
        self.fallbacks += temperature > 0
        if opts.no_speech_threshold is not None:
            skip = result.no_speech_prob > opts.no_speech_threshold
            if opts.log_prob_threshold is not None and avg_logprob > opts.log_prob_threshold:
                skip = False  # confident text despite the no-speech probability
            if skip:
                self.frame = seek + size
                return []
        current, seek, single_timestamp_ending = fw._split_segments_by_timestamps(
            tokenizer=tokenizer,
            tokens=result.sequences_ids[0],
            time_offset=time_offset,
            segment_size=size,
            segment_duration=duration,
            seek=seek,
        )
        if opts.word_timestamps:
            fw.add_word_timestamps(
                [current],
                tokenizer,
                encoder_output,
                size,
                opts.prepend_punctuations,
                opts.append_punctuations,
                last_speech_timestamp=self.last_speech,
            )
            if not single_timestamp_ending:
                last_word_end = get_end(current)
                if last_word_end is not None and last_word_end > time_offset:
                    seek = round(last_word_end * fw.frames_per_second)
            last_word_end = get_end(current)
            if last_word_end is not None:
                self.last_speech = last_word_end
        finished = []
        for segment in current:
            text = tokenizer.decode(segment["tokens"])
            if segment["start"] == segment["end"] or not text.strip():
                continue
            self.prompt.extend(segment["tokens"])
            if keep(temperature, avg_logprob):
                finished.append(
                    Segment(
                        start=float(segment["start"]),
                        end=float(segment["end"]),
                        text=text.strip(),
                        no_speech_prob=float(result.no_speech_prob),
                        avg_logprob=float(avg_logprob),
                        words=words_of(segment.get("words")),
                    )
                )
        if not opts.condition_on_previous_text or temperature > opts.prompt_reset_on_temperature:
            self.prompt = []
        del self.prompt[:-PROMPT_TOKENS]
        self.frame = seek
        return finished

    def _generate(self, encoder_output: Any, prompt: list[int]) -> tuple[Any, float, float, float]:
        """The library's `generate_with_fallback`; sampling is seeded per window and
        temperature, on the model as loaded (ct2_sampling.py)."""
        from faster_whisper.transcribe import get_compression_ratio

        fw, opts = self.fw, self.opts
        max_initial = round(opts.max_initial_timestamp / fw.time_precision)
        max_length = fw.max_length
        if opts.max_new_tokens is not None:
            max_length = len(prompt) + opts.max_new_tokens
        all_results: list[tuple[Any, float, float, float]] = []
        below_ratio: list[tuple[Any, float, float, float]] = []
        greedy: Any = None  # a greedy result with its rows, for the seeded sampler
        replica: Any = None
        temperature = 0.0
        for temperature in opts.temperatures:
            if temperature > 0 and self.new_replica is not None:
                if replica is None:  # its thread's generator starts from this window's seed
                    import ctranslate2

                    ctranslate2.set_random_seed(window_seed(self.frame, temperature))
                    replica = self.new_replica()
                result = self._decode(
                    encoder_output, prompt, max_length, False, replica, temperature
                )
            elif temperature > 0:
                if greedy is None:
                    greedy = self._decode(encoder_output, prompt, max_length, rows=True)
                result: Any = seeded_sample(
                    fw.model,
                    encoder_output,
                    prompt,
                    self.vocabulary,
                    temperature=temperature,
                    seed=window_seed(self.frame, temperature),
                    greedy=greedy,
                    max_length=max_length,
                    length_penalty=opts.length_penalty,
                    suppress_blank=opts.suppress_blank,
                    max_initial_timestamp_index=max_initial,
                )
            else:
                in_place = self.new_replica is None  # (rows: a vocabulary of floats a step)
                rows = in_place and opts.beam_size == 1 and len(opts.temperatures) > 1
                result = self._decode(encoder_output, prompt, max_length, rows=rows)
                greedy = result if rows else None
            tokens = result.sequences_ids[0]
            avg_logprob = result.scores[0] * (len(tokens) ** opts.length_penalty)
            avg_logprob /= len(tokens) + 1
            ratio = get_compression_ratio(self.tokenizer.decode(tokens).strip())
            decoded = (result, avg_logprob, temperature, ratio)
            all_results.append(decoded)
            needs_fallback = False
            if opts.compression_ratio_threshold is not None:
                if ratio > opts.compression_ratio_threshold:
                    needs_fallback = True  # too repetitive
                else:
                    below_ratio.append(decoded)
            lp = opts.log_prob_threshold
            if lp is not None and avg_logprob < lp:
                needs_fallback = True
            ns = opts.no_speech_threshold
            if (
                ns is not None
                and lp is not None
                and result.no_speech_prob > ns
                and avg_logprob < lp
            ):
                needs_fallback = False  # silence
            if not needs_fallback:
                return decoded
        best = max(below_ratio or all_results, key=lambda x: x[1])
        return best[0], best[1], temperature, best[3]  # the last temperature tried

    def _decode(
        self,
        encoder_output: Any,
        prompt: list[int],
        max_length: int,
        rows: bool,
        replica: Any = None,
        temperature: float = 0.0,
    ) -> Any:
        """The window's deterministic decode (the options' beam, greedy where `rows`: then
        with every step's logits, which the seeded sampler walks while it agrees), or with
        a `replica`, CTranslate2's own sample at `temperature` from its seeded generator."""
        opts = self.opts
        sampling: dict[str, Any] = dict(beam_size=1 if rows else opts.beam_size)
        if replica is not None:
            sampling = dict(
                beam_size=1,
                num_hypotheses=opts.best_of,
                sampling_topk=0,
                sampling_temperature=temperature,
            )
        return (replica or self.fw.model).generate(
            encoder_output,
            [prompt],
            **sampling,
            patience=opts.patience,
            length_penalty=opts.length_penalty,
            repetition_penalty=opts.repetition_penalty,
            no_repeat_ngram_size=opts.no_repeat_ngram_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            return_logits_vocab=rows,
            suppress_blank=opts.suppress_blank,
            suppress_tokens=opts.suppress_tokens,
            max_initial_timestamp_index=round(opts.max_initial_timestamp / self.fw.time_precision),
        )[0]
