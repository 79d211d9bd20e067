"""One frozen options value per stage, all built from `Settings` in one place.

`Settings` is what the user chose, flat, as the command line and the config file spell it.
Each stage takes only its own options, so no option list is spelled twice and a stage
cannot read a setting that does not shape its output. `StageOptions.build` is the one
place that turns the user's choice into them (and applies the device: fp16 on CUDA).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .settings import Settings

SAMPLE_RATE = 16_000  # what every Whisper model hears


@dataclass(frozen=True)
class DecodeOptions:
    """How the media is turned into samples."""

    sample_rate: int = SAMPLE_RATE


@dataclass(frozen=True)
class TranscribeOptions:
    """Everything that shapes the transcript, passed whole (one value, not 20 keywords)."""

    language: str | None = None
    task: str = "transcribe"  # or "translate": Whisper's own translation into English
    beam_size: int | None = None
    condition_on_previous_text: bool = True
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    fp16: bool = False
    word_timestamps: bool = True
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    batch_size: int = 0  # > 0: VAD-cut chunks decoded this many at a time (asr_batched)
    fill_gaps: bool = True  # decode skipped speech again without the prompt (asr/gaps.py)

    def described(self) -> dict[str, Any]:
        """These options as plain values (the json output's `options`)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def whisper_kwargs(self) -> dict[str, Any]:
        """These options as openai-whisper's `transcribe` keywords (the reference run)."""
        kw: dict[str, Any] = dict(
            task=self.task,
            language=self.language,
            condition_on_previous_text=self.condition_on_previous_text,
            no_speech_threshold=self.no_speech_threshold,
            logprob_threshold=self.logprob_threshold,
            fp16=self.fp16,
            temperature=self.temperature,
            word_timestamps=self.word_timestamps,
            verbose=None,  # None silences both the text dump and the tqdm bar
        )
        if self.beam_size and self.beam_size > 1:
            kw["beam_size"] = self.beam_size
        return kw


@dataclass(frozen=True)
class TranslateOptions:
    """Which languages, with which model, in batches of how many lines."""

    targets: tuple[str, ...] = ()
    model_template: str | None = None  # None: the default family for each pair
    batch_size: int = 32
    source: str | None = None  # as given by --language; None: the one detected per file


@dataclass(frozen=True)
class Layout:
    """How cues are cut and laid out: characters per line, lines per cue, the longest a
    cue stays up, and the reading speed (characters per second) its tail may linger for."""

    max_line_width: int = 42
    max_lines: int = 2
    max_cue_seconds: float = 7.0
    max_cps: float = 17.0

    @classmethod
    def of(cls, s: Settings) -> Layout:
        return cls(s.max_line_width, s.max_lines, float(s.max_cue_seconds), float(s.max_cps))


@dataclass(frozen=True)
class WriteOptions:
    """Which subtitle files go where, and how their cues are laid out."""

    formats: tuple[str, ...] = ("srt",)
    output_dir: str | None = None
    languages: tuple[str, ...] = ()  # a `base.LANG.fmt` per translation, too
    transcript_lang: str | None = None  # "en" with --task translate: `base.en.fmt`
    layout: Layout = Layout()
    karaoke: bool = False  # ass: each word highlighted as it is spoken

    @classmethod
    def of(cls, s: Settings) -> WriteOptions:
        """Where outputs go needs no device: the queue asks before a job runs."""
        return cls(
            formats=s.formats,
            output_dir=s.output_dir,
            languages=s.translate_to,
            transcript_lang="en" if s.task == "translate" else None,
            layout=Layout.of(s),
            karaoke=s.karaoke,
        )


@dataclass(frozen=True)
class StageOptions:
    """Every stage's options for one job on one device."""

    decode: DecodeOptions
    transcribe: TranscribeOptions
    translate: TranslateOptions
    write: WriteOptions

    @classmethod
    def build(cls, s: Settings, device: str) -> StageOptions:
        return cls(
            decode=DecodeOptions(),
            transcribe=TranscribeOptions(
                language="en" if s.english_only_model else s.language,
                task=s.task,
                beam_size=s.beam_size,
                condition_on_previous_text=s.condition_on_previous_text,
                word_timestamps=s.word_timestamps,
                no_speech_threshold=s.no_speech_threshold,
                logprob_threshold=s.logprob_threshold,
                fp16=device.startswith("cuda"),
                batch_size=s.asr_batch_size,
                fill_gaps=s.fill_gaps,
            ),
            translate=TranslateOptions(
                targets=s.translate_to,
                model_template=s.translation_model,
                batch_size=s.translation_batch_size,
                source="en" if s.english_only_model or s.task == "translate" else s.language,
            ),
            write=WriteOptions.of(s),
        )
