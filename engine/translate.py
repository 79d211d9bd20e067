"""Batched seq2seq translation of subtitle cues with transformers.

Cues are sorted by length before batching so each batch pads little, translated under
`torch.inference_mode()`, and put back in their original order: the output has exactly one
text per input, so translated subtitles keep the transcript's cue count and timings.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import faults

log = logging.getLogger("subq.engine")

DEFAULT_TEMPLATE = "Helsinki-NLP/opus-mt-{src}-{tgt}"
# tokenizer.model_max_length when the tokenizer sets none (transformers' VERY_LARGE_INTEGER
# is 1e30): above this it is not a limit of the model.
_NO_LIMIT = 1_000_000

# ISO 639-1 -> FLORES-200 codes used by NLLB (the common subtitle languages).
# fmt: off
NLLB_CODES = {
    "en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "it": "ita_Latn",
    "pt": "por_Latn", "nl": "nld_Latn", "pl": "pol_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl",
    "cs": "ces_Latn", "sv": "swe_Latn", "da": "dan_Latn", "fi": "fin_Latn", "no": "nob_Latn",
    "tr": "tur_Latn", "el": "ell_Grek", "ar": "arb_Arab", "he": "heb_Hebr", "hi": "hin_Deva",
    "ja": "jpn_Jpan", "ko": "kor_Hang", "zh": "zho_Hans", "vi": "vie_Latn", "id": "ind_Latn",
    "th": "tha_Thai", "ro": "ron_Latn", "hu": "hun_Latn", "bg": "bul_Cyrl", "fa": "pes_Arab",
}
# fmt: on


class TranslationError(Exception):
    """Translation cannot run; str() is the one-line message for the user."""


def output_cap(source_tokens: int) -> int:
    """The most new tokens a cue of `source_tokens` tokens (specials included) may take.

    A translation runs to about twice its source's tokens at most (a word split into several
    subwords, a language that says more words); the +10 covers short cues ("Yes." ->
    "Ja, genau.") and language / end tokens. A degenerate model loops until its cap, so the
    cap follows the input rather than a fixed number that costs minutes per cue.
    """
    return 2 * source_tokens + 10


@dataclass(frozen=True)
class Limits:
    """What the model can take: `source` tokens in (None: no limit known), at most
    `new_tokens` out (None: only output_cap), at least `min_new_tokens` out if it asks."""

    source: int | None
    new_tokens: int | None
    min_new_tokens: int


def model_limits(model: Any, tokenizer: Any) -> Limits:
    """The model's own bounds, so generate() never indexes past its position table.

    Marian and M2M100/NLLB look up a position for every encoder and decoder token in a table
    of `max_position_embeddings` rows: a longer input, or a decoder sequence (its start token
    plus the new tokens) longer than that, fails with "IndexError: index out of range in
    self" (M2M100 grows its table instead, but was not trained past it either). The
    tokenizer's model_max_length can be smaller (then it is the limit) or a placeholder. A
    max_new_tokens or max_length the model's generation_config sets is a limit too.
    """
    positions = getattr(model.config, "max_position_embeddings", None)
    positions = positions if isinstance(positions, int) and positions > 1 else None
    given = getattr(tokenizer, "model_max_length", None)
    given = given if isinstance(given, int) and 0 < given < _NO_LIMIT else None
    sources = [n for n in (positions, given) if n is not None]
    gc = model.generation_config
    caps = [positions - 1] if positions else []  # the decoder start token takes a position
    if gc.max_new_tokens is not None:
        caps.append(gc.max_new_tokens)
    # transformers 4 defaults max_length to 20: only a value the model itself set counts.
    if gc.max_length is not None and "max_length" in gc.to_diff_dict():
        caps.append(gc.max_length - 1)
    return Limits(
        source=min(sources) if sources else None,
        new_tokens=max(1, min(caps)) if caps else None,
        min_new_tokens=gc.min_new_tokens or 0,
    )


def same_language(src: str, tgt: str) -> bool:
    """Translating into the language spoken is a copy ("es" and NLLB's "spa_Latn" alike)."""
    return tgt == src or NLLB_CODES.get(src) == tgt


def model_name_for(template: str | None, src: str, tgt: str) -> str:
    """The model to use for a language pair: a template with {src}/{tgt}, or one model."""
    return (template or DEFAULT_TEMPLATE).format(src=src, tgt=tgt)


@dataclass
class Translator:
    name: str
    model: Any
    tokenizer: Any
    device: str
    family: str  # "marian", "nllb" or "m2m100"

    def translate(
        self,
        texts: Sequence[str],
        src: str,
        tgt: str,
        batch_size: int,
        on_batch: Callable[[int, int], None] | None = None,
        on_oom: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Translate in length-sorted batches; halve the batch on OOM down to 1."""
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[str] = [""] * len(texts)
        todo = [i for i in order if texts[i].strip()]
        done = 0
        while done < len(todo):
            batch = todo[done : done + batch_size]
            try:
                faults.maybe_fail("translate")
                outputs = self._generate([texts[i] for i in batch], src, tgt)
            except (torch.OutOfMemoryError, faults.InjectedOutOfMemory):
                if batch_size == 1:
                    raise
                batch_size = max(1, batch_size // 2)
                _free_cuda()
                if on_oom:
                    on_oom(batch_size)
                continue
            for i, text in zip(batch, outputs, strict=True):
                results[i] = text
            done += len(batch)
            if on_batch:
                on_batch(done, len(todo))
        return results

    def _generate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        """One batch through generate(), inside the model's limits (see model_limits).

        Beams, bad words, decoder start, min_new_tokens... come from the model's
        generation_config; subq sets only the length cap. Each row is cut to its own cue's
        cap, so a short cue decodes the same in any batch (greedy decoding).
        """
        import torch

        tok = self.tokenizer
        limits = model_limits(self.model, tok)
        gen: dict[str, Any] = {}
        if self.family == "nllb":
            tok.src_lang = NLLB_CODES.get(src, src)
            gen["forced_bos_token_id"] = tok.convert_tokens_to_ids(NLLB_CODES.get(tgt, tgt))
        elif self.family == "m2m100":
            tok.src_lang = src
            gen["forced_bos_token_id"] = tok.get_lang_id(tgt)
        enc = tok(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=limits.source is not None,
            max_length=limits.source,
        )
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        if limits.source is not None and max(lengths) >= limits.source:
            log.warning(
                "%s: a cue fills the model's %d-token input; any more of it is cut",
                self.name,
                limits.source,
            )
        caps = [max(output_cap(n), limits.min_new_tokens) for n in lengths]
        if limits.new_tokens is not None:
            caps = [min(c, limits.new_tokens) for c in caps]
        gen["max_new_tokens"] = max(caps)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen)
        # An encoder-decoder's output starts with the decoder start token, not counted new.
        start = 1 if self.model.config.is_encoder_decoder else enc["input_ids"].shape[1]
        # With forced_eos_token_id the cap's last token is </s>, which decodes to nothing:
        # a row cut at its own cap keeps one token less, as it would have alone.
        keep = 1 if self.model.generation_config.forced_eos_token_id is not None else 0
        rows = [row[: start + cap - keep] for row, cap in zip(out, caps, strict=True)]
        return [t.strip() for t in tok.batch_decode(rows, skip_special_tokens=True)]


def load_translator(name: str, device: str) -> Translator:
    """Load by local path, from the local hub cache, or (if the network allows) the hub."""
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    # transformers 5 draws "Loading weights" progress bars on stderr, under the TUI.
    hf_logging.disable_progress_bar()
    try:
        local = Path(name).expanduser()
        local.exists()
    except (OSError, RuntimeError, ValueError) as exc:  # "~nouser/x", a too-long name
        raise TranslationError(f"{name}: not a usable model name or folder ({exc})") from None
    if not local.exists() and _looks_like_path(name):
        raise TranslationError(f"{name}: no such translation model folder")
    if local.is_dir() and not (local / "config.json").is_file():
        raise TranslationError(f"{local}: not a transformers model folder (no config.json)")
    source = str(local) if local.exists() else name
    attempts = [True] if local.exists() else [True, False]
    last_error: Exception | None = None
    step = "config"
    unreachable = False
    for local_only in attempts:
        # The hub only after the cache missed, and only if it answers: unreachable,
        # huggingface_hub retries for most of a minute before it gives up.
        if not local_only and not _hub_reachable():
            unreachable = True
            continue  # the last attempt: the loop's else reports it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # The config first: it is small, and its error says best what a folder lacks.
                step = "config"
                config = AutoConfig.from_pretrained(source, local_files_only=local_only)
                step = "tokenizer"
                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
                step = "model"
                model = AutoModelForSeq2SeqLM.from_pretrained(
                    source, config=config, local_files_only=local_only
                )
            break
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # transformers raises many types for "not there"
            last_error = exc
    else:
        if local.exists():
            what = {
                "config": "not a transformers model",
                "tokenizer": "no usable tokenizer",
                "model": "not a transformers seq2seq model",
            }[step]
            raise TranslationError(f"{local}: {what} ({_one_line(last_error)})") from None
        why = "the model hub is not reachable" if unreachable else "not downloadable"
        raise TranslationError(
            f"cannot load translation model {name}: not in the local cache and {why}; "
            "pass a local folder with --translation-model"
        ) from None
    model = model.to(device).eval()
    kind = model.config.model_type
    family = "nllb" if "nllb" in name.lower() else ("m2m100" if kind == "m2m_100" else "marian")
    return Translator(name=name, model=model, tokenizer=tokenizer, device=device, family=family)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection (False in offline mode;
    True behind a proxy, which only huggingface_hub's own requests go through)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_like_path(name: str) -> bool:
    """A filesystem path rather than a hub id ("org/model" is both; it counts as an id)."""
    return name.startswith(("/", "~", "./", "../", ".\\", "..\\")) or Path(name).is_absolute()


def _one_line(exc: Exception | None, limit: int = 160) -> str:
    """An exception's message on one line (whitespace collapsed), cut to `limit` characters."""
    text = " ".join(str(exc or "").split())
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _free_cuda() -> None:
    import gc

    import torch

    if torch.cuda.is_available():  # else there is no cache to free, and gc.collect() is slow
        gc.collect()
        torch.cuda.empty_cache()
