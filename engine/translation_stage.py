"""One translation of a job's cues, as the pipeline runs it (a part of `Pipeline`).

Kept apart so each room stays small: the pipeline decides which languages, and from which
(the language spoken); this takes the stored translation of that pair if there is one, else
loads the pair's model in the job's worker and translates there, with progress per batch.
A stored translation belongs to the cue texts it translated (their hash is in its key): the
layout settings cut the same transcript into other cues.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from . import worker_protocol as wp
from .jobs import Stage
from .model_types import RemoteError
from .translate import TranslationError, model_name_for

if TYPE_CHECKING:
    from .subtitles import Cue


class TranslationStage:
    """The translate stage of `Pipeline`, which provides what is named on `self` here."""

    ctx: Any
    job: Any
    entry: str
    times: dict[str, float]
    options: Any
    transcript_key: str
    _load: Any
    _forced: Any
    _remote: Any
    _clean_after: Any
    _count_clean: Any

    def _translation(self, cues: list[Cue], src: str, lang: str) -> list[str]:
        ctx, store, job, options = self.ctx, self.ctx.store, self.job, self.options.translate
        name = model_name_for(options.model_template, src, lang)
        texts = "\n".join(c.text for c in cues).encode()
        cut = hashlib.blake2b(texts, digest_size=8).hexdigest()
        key = f"{lang}|{name}|{self.transcript_key}|{cut}"
        stored = store.translations(job.id).get(key)
        if stored is not None and len(stored) == len(cues):
            return stored
        self.job = ctx.enter_stage(self.job, Stage.TRANSLATE)
        translator = self._load(
            lambda: ctx.models.translator(name, self.entry, ignore_budget=self._forced())
        )
        t0 = time.perf_counter()

        def on_batch(fraction: float) -> None:
            ctx.progress(self.job, Stage.TRANSLATE, fraction, t0, None)

        request = wp.Translate(
            str(job.id),
            translator.key,
            tuple(c.text for c in cues),
            src,
            lang,
            options.batch_size,
            self._clean_after(lang),
        )
        try:
            done = self._remote(self.entry, request, lambda cp, f: None, on_batch)
        except RemoteError as exc:
            if exc.kind == wp.TRANSLATION:
                raise TranslationError(str(exc)) from None
            raise
        finally:
            self.times[f"translate:{lang}"] = time.perf_counter() - t0
        self._count_clean(done, f"translate:{lang}")
        texts = list(done["lines"])
        store.set_translation(job.id, key, texts)
        return texts
