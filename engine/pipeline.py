"""One job's stages: probe -> decode -> transcribe -> translate -> write.

Each stage starts at a safe point (pause, cancel and stop are honoured there) and stores its
result before the next begins, so a paused or crashed job resumes from its last finished
stage, and inside transcription from its last finished 30 s window.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from . import asr, junk, logfile, media, memory, prober, subtitled
from . import worker_protocol as wp
from .cluster import ClusterError
from .cue_builder import build_cues
from .formats import Document
from .job_context import JobContext, StopRequested
from .jobs import Job, JobState, Stage
from .model_types import NeedsMemory, RemoteError, WorkerDied
from .options import StageOptions
from .outputs import (
    OutputTarget,
    content_fingerprint,
    done_key,
    output_targets,
    outputs_current,
)
from .pool import real_device
from .recovery import (
    GpuMemoryError,
    is_oom,
    log_refills,
    oom_message,
    resume_point,
    transcribe_after_oom,
)
from .remote import remote_call
from .settings import Settings
from .store import DoneRecord, LeaseLost, StateError
from .subtitles import remove_stale_temps
from .translate import TranslationError, same_language
from .translation_stage import TranslationStage
from .writing import write_targets

__all__ = ["JobContext", "Outcome", "Pipeline", "StopRequested"]

log = logging.getLogger("subq.engine")


@dataclass
class Outcome:
    state: JobState
    changes: dict[str, Any] = field(default_factory=dict)


class Pipeline(TranslationStage):
    def __init__(
        self, ctx: JobContext, job: Job, entry: str | None = None, fingerprint: str = ""
    ) -> None:
        self.ctx = ctx
        self.job = job
        self.times: dict[str, float] = dict(job.stage_times)
        # The worker entry the job runs on ("cpu#2", "cuda:1"); its device for the options.
        self.entry = entry or memory.device_entries(job.settings.device, ctx.nvml())[0]
        self.device = real_device(self.entry)
        self.settings: Settings = effective_settings(job.settings, self.device)
        self.options = StageOptions.build(self.settings, self.device)
        self.resume_from = job.resume_from
        self.fingerprint = fingerprint  # the content's hash, if the caller just made it
        self.language: str | None = None  # spoken, as given or detected (with the transcript)
        self.language_probability: float | None = None
        self._forced_flag = False

    @property
    def transcript_key(self) -> str:
        """Stored transcripts and checkpoints belong to these settings and this content."""
        return transcript_key(self.settings, self.fingerprint)

    def run(self) -> Outcome:
        try:
            return self._run()
        except StopRequested as stop:
            return self._stopped(stop.state, str(stop))
        except asr.TranscriptionStopped as stopped:
            cause = stopped.cause
            if isinstance(cause, StopRequested):
                return self._stopped(cause.state, str(cause))
            if isinstance(cause, StateError | LeaseLost):
                raise cause from None
            raise
        except (StateError, WorkerDied, LeaseLost, ClusterError):
            raise  # the queue cannot be saved / the worker died / the job is another's / no cluster
        except (media.MediaError, asr.ModelLoadError, TranslationError, GpuMemoryError) as exc:
            return self._failed(str(exc))
        except OSError as exc:
            return self._failed(_os_error(exc, self.job.path))
        except RemoteError as exc:
            if is_oom(exc):
                return self._failed(oom_message(self.ctx, self.job, self.device, exc))
            return self._failed(str(exc))
        except Exception as exc:
            log.exception("unexpected error in %s", self.job.path)
            return self._failed(
                f"{self.job.name}: internal error: {_first_line(exc)}"
                + logfile.details("traceback")
            )

    def _stopped(self, state: JobState, reason: str) -> Outcome:
        resume_from = self.resume_from  # kept on a cancel too: a retry resumes there
        return Outcome(
            state,
            {
                "stage": None if state == JobState.CANCELLED else self.job.stage,
                "stage_times": tuple(self.times.items()),
                "resume_from": resume_from,
            },
        )

    def _failed(self, message: str) -> Outcome:
        if self.job.name not in message and self.job.path not in message:
            message = f"{self.job.name}: {message}"  # every error line names its file
        return Outcome(
            JobState.FAILED,
            {
                "error": message.replace("\n", " "),
                "stage": None,
                "stage_times": tuple(self.times.items()),
            },
        )

    # -- stages ------------------------------------------------------------------------
    def _run(self) -> Outcome:
        job, store, s = self.job, self.ctx.store, self.settings
        path = Path(job.path)
        started = time.perf_counter()
        info = prober.probe_isolated(path)  # a reader child: a crash costs this file only
        self.fingerprint = self.fingerprint or content_fingerprint(path)
        self.times["probe"] = time.perf_counter() - started
        self.job = job = dataclasses.replace(job, duration=info.duration)
        base = job.output_base or str(path.with_suffix(""))
        targets = output_targets(base, self.options.write)
        key = done_key(job.settings, base)  # as requested: "auto" stays auto
        remove_stale_temps(targets[0].path.parent)
        if s.skip_subtitled and (
            why := subtitled.skip_reason(path, Path(base), info.subtitles, s, store)
        ):
            changes = {"stage": None, "duration": info.duration, "error": why, "outputs": ()}
            return Outcome(JobState.SKIPPED, {**changes, **junk.NOTHING_FOUND})
        if not s.force and outputs_current(
            store.done_record(job.id), self.fingerprint, key, targets
        ):
            return Outcome(
                JobState.SKIPPED,
                {
                    "stage": None,
                    "outputs": tuple(str(t.path) for t in targets),
                    "duration": info.duration,
                    "error": "outputs already exist and are up to date (--force redoes)",
                },
            )

        found = self._examine(path, self._transcript(info.duration), info.duration)
        cues = build_cues(found.segments, self.options.write.layout)
        doc = Document(
            tuple(cues), self.language, found.segments, s.model, self._described(), **found.shown
        )
        # The transcript's own subtitles are written before any translation starts: a
        # translation that cannot load or crashes must never take them with it.
        written = self._write(doc, [t for t in targets if t.lang is None])
        errors = []
        src = self.options.translate.source or self.language or "en"
        for lang in self.options.translate.targets:
            try:  # into the language spoken: the transcript itself, no model
                copy = same_language(src, lang)
                texts = [c.text for c in cues] if copy else self._translation(cues, src, lang)
            except (TranslationError, asr.ModelLoadError, GpuMemoryError, RemoteError) as exc:
                errors.append(f"translation {src}→{lang} failed: {exc}")
                continue
            except Exception as exc:
                if isinstance(exc, StopRequested | asr.TranscriptionStopped | WorkerDied):
                    raise
                log.exception("translation to %s failed for %s", lang, job.path)
                errors.append(f"translation {src}→{lang} failed: {_first_line(exc)}")
                continue
            translated = tuple(  # no word times: they are the transcript's words
                dataclasses.replace(c, text=t, words=()) for c, t in zip(cues, texts, strict=True)
            )
            into = dataclasses.replace(
                doc, cues=translated, language=lang, segments=(), translated_from=src
            )
            written |= self._write(into, [t for t in targets if t.lang == lang])
        outputs = tuple(str(t.path) for t in targets if str(t.path) in written)
        if errors:
            store.set_done_record(job.id, None)
            return Outcome(
                JobState.FAILED,
                {
                    "stage": None,
                    "outputs": outputs,
                    "error": f"{job.name}: "
                    + "; ".join(errors)
                    + (" (the transcript's subtitles were written)" if written else ""),
                    "stage_times": tuple(self.times.items()),
                    "duration": info.duration,
                    "resume_from": 0.0,
                    "language": self.language,
                    "language_probability": self.language_probability,
                    **found.changes,
                },
            )
        store.set_done_record(job.id, DoneRecord(self.fingerprint, key, written))
        notes = self.job.notes
        if not cues:
            notes = tuple(dict.fromkeys((*notes, "no speech found: the subtitles are empty")))
        return Outcome(
            JobState.DONE,
            {
                "stage": None,
                "progress": 1.0,
                "outputs": outputs,
                "error": None,
                "stage_times": tuple(self.times.items()),
                "duration": info.duration,
                "notes": notes,
                "resume_from": 0.0,
                "language": self.language,
                "language_probability": self.language_probability,
                **found.changes,
            },
        )

    def _examine(self, path: Path, segments: list[asr.Segment], duration: float | None) -> Any:
        """The transcript cleaned of junk, with its quality flags (junk.examine)."""
        s = self.settings
        detected = None if s.language else self.language_probability
        speech = partial(prober.speech_isolated, path)
        threshold = s.no_speech_threshold
        return junk.examine(segments, duration, detected, speech, s.keep_junk, threshold)

    def _write(self, doc: Document, targets: list[OutputTarget]) -> dict[str, str]:
        """Write each target atomically; returns path -> size:hash of what was written."""
        if not targets:
            return {}
        self.job = self.ctx.enter_stage(self.job, Stage.WRITE)
        t0 = time.perf_counter()
        targets[0].path.parent.mkdir(parents=True, exist_ok=True)
        store, force, options = self.ctx.store, self.settings.force, self.options.write
        sums = write_targets(store, doc, targets, options, force, self._kept)
        self.times["write"] = self.times.get("write", 0.0) + time.perf_counter() - t0
        return sums

    def _described(self) -> dict[str, Any]:
        """The options that made the transcript and its cues, as the json output says."""
        layout = dataclasses.asdict(self.options.write.layout)
        return {"backend": self.settings.backend, **self.options.transcribe.described(), **layout}

    def _kept(self, reason: str) -> None:
        self.ctx.log("warning", f"{self.job.name}: {reason}", self.job.id)
        notes = tuple(dict.fromkeys((*self.job.notes, reason)))  # once, however many runs
        self.job = dataclasses.replace(self.job, notes=notes)

    def _transcript(self, duration: float | None) -> list[asr.Segment]:
        ctx, store, s, job = self.ctx, self.ctx.store, self.settings, self.job
        key = self.transcript_key
        stored = None if s.force else store.transcript(job.id, key)
        if stored is not None:
            ctx.log("info", f"{job.name}: reusing the stored transcript", job.id)
            self.language, self.language_probability = stored[1], stored[2]
            return [asr.Segment.from_json(row) for row in stored[0]]
        resume = resume_point(ctx, job, key)
        audio_seconds = duration
        first = self._load(
            lambda: ctx.models.whisper(
                s.model, self.entry, backend=s.backend, ignore_budget=self._forced()
            )
        )
        self.job = ctx.enter_stage(self.job, Stage.TRANSCRIBE)
        t0 = time.perf_counter()
        shown = 0.0  # word-timed segment ends can pass the next window's start a little

        base = min(1.0, resume.seek / duration) if resume and duration else 0.0

        def show(fraction: float) -> None:
            nonlocal shown
            shown = max(shown, fraction)
            ctx.progress(self.job, Stage.TRANSCRIBE, shown, t0, audio_seconds, base)

        def on_window(cp: dict[str, Any], fraction: float) -> None:
            if cp.get("seek", 0) > (resume.seek if resume else 0) or cp.get("segments"):
                store.set_checkpoint(job.id, key, cp)
                self.resume_from = float(cp.get("seek", 0.0))
            show(fraction)

        def run(entry: str, options: Any) -> dict[str, Any]:
            same = entry == first.entry and ctx.models.pool.alive(entry)
            model = first if same else ctx.models.whisper(s.model, entry, backend=s.backend)
            fields = dataclasses.asdict(options)
            where = resume.to_json() if resume else None
            clean = self._clean_after(None)
            request = wp.Transcribe(str(job.id), model.key, job.path, fields, where, clean)
            return self._remote(entry, request, on_window, lambda f: f > shown and show(f))

        try:
            try:
                done = run(self.entry, self.options.transcribe)
            except RemoteError as exc:
                if not is_oom(exc):
                    raise
                done, entry = transcribe_after_oom(
                    ctx, self.job, s, self.entry, self.options.transcribe, run
                )
                self.device = real_device(entry)
        finally:  # a stopped job's time counts too: the table shows the time spent
            self.times["transcribe"] = self.times.get("transcribe", 0) + time.perf_counter() - t0
        ctx.progress(self.job, Stage.TRANSCRIBE, 1.0, t0, audio_seconds, base)
        self._count_clean(done, "transcribe")
        log_refills(ctx, job, done.get("refilled", ()))
        segments = [asr.Segment.from_json(row) for row in done["segments"]]
        self.language = done["language"]
        self.language_probability = done.get("language_probability")
        store.set_transcript(
            job.id, key, done["segments"], self.language, self.language_probability
        )
        self.job = dataclasses.replace(self.job, resume_from=0.0)
        self.resume_from = 0.0
        return segments

    def _remote(self, entry: str, request: Any, on_window: Any, on_progress: Any) -> Any:
        return remote_call(self.ctx, lambda: self.job, entry, request, on_window, on_progress)

    def _clean_after(self, lang: str | None) -> bool:
        return clean_after_stage(self.settings.cleanup, self.options.translate.targets, lang)

    def _count_clean(self, done: dict[str, Any], stage: str) -> None:
        """The worker's clean-up, timed inside the stage's call, is shown as its own line."""
        seconds = done.get("cleaned")
        if seconds is not None:
            self.times[stage] = max(0.0, self.times.get(stage, 0.0) - float(seconds))
            self.times["clean"] = self.times.get("clean", 0.0) + float(seconds)

    def _load(self, load: Any) -> Any:
        while True:
            try:
                return load()
            except NeedsMemory as need:
                if self.ctx.wait_for_memory(self.job, need):
                    self._forced_flag = True

    def _forced(self) -> bool:
        return self._forced_flag or self.ctx.started_anyway(self.job.id)


def clean_after_stage(policy: str, targets: tuple[str, ...], lang: str | None) -> bool:
    """Whether a worker frees its cache after a stage (`lang` None: the transcription).

    `stage`: after each; `job`: after the job's last model stage, so the next file starts
    clean without a synchronize between one file's own stages; `never`: torch keeps its
    cache (fastest; holds the most between files)."""
    if policy == "stage":
        return True
    return policy == "job" and lang == (targets[-1] if targets else None)


def effective_settings(settings: Settings, device: str) -> Settings:
    """`settings` with "auto" made concrete for `device`, as a job on it runs them.

    Transcript keys, checkpoints and events then name the backend that really ran.
    """
    backend = asr.resolve_backend(
        settings.backend, device, settings.model, batched=settings.asr_batch_size > 0
    )
    return dataclasses.replace(settings, backend=backend)


def transcript_key(settings: Settings, fingerprint: str) -> str:
    return f"{settings.transcript_key()}:{fingerprint}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _os_error(exc: OSError, job_path: str) -> str:
    target = exc.filename or job_path
    reason = exc.strerror or str(exc)
    if exc.errno == 28:
        kept = target != job_path and Path(target).exists()
        reason = "no space left on device" + ("; the previous subtitles were kept" if kept else "")
    return f"{target}: cannot write: {reason}"
