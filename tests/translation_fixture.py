"""A tiny random-weight Marian translation model, saved the way a real one is on disk.

`make_tiny_marian(folder)` writes a `MarianMTModel` (16-dim, one encoder and one decoder
layer) and a word-level `PreTrainedTokenizerFast` whose vocabulary covers every word of
the CLIPS' texts in tests/data/references.json, both with `save_pretrained`, so
`load_translator(str(folder), ...)` loads it through AutoTokenizer / AutoModelForSeq2SeqLM
exactly as it loads opus-mt. Weights are seeded, and the tests decode greedily, so output is
deterministic (if meaningless).

Use it from a test module through the session fixture; add to tests/conftest.py:

    from translation_fixture import tiny_marian  # noqa: F401
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 (Marian: pad is also decoder start)
TINY_MAX_NEW_TOKENS = 12
WORD = re.compile(r"\w+|[^\w\s]+")  # the same split as tokenizers' Whitespace pre-tokenizer


# The clips whose texts make the vocabulary and the cues. Pinned: a clip added to
# references.json for other tests must not change the seeded model, whose outputs the tests
# rely on (every sentence translates to something, outputs end at different lengths).
CLIPS = ("talk.mp4", "lecture.mkv", "podcast.mp3", "long.mp3")


def reference_texts() -> list[str]:
    """The texts of CLIPS in references.json."""
    refs = json.loads((DATA / "references.json").read_text(encoding="utf-8"))
    return [refs[clip] for clip in CLIPS]


def reference_words() -> list[str]:
    """Every distinct word and punctuation mark of the CLIPS' texts, in first-seen order."""
    return list(dict.fromkeys(w for text in reference_texts() for w in WORD.findall(text)))


def reference_sentences() -> list[str]:
    """The CLIPS' texts split into sentences: subtitle-like cues."""
    return [s for text in reference_texts() for s in re.split(r"(?<=[.!?])\s+", text) if s]


def long_cue(at_least: int) -> str:
    """Reference sentences joined into one cue of more than `at_least` words (tokens, for
    the word-level tokenizer): longer than a small model's position table."""
    text = ""
    for sentence in reference_sentences() * 8:
        text = f"{text} {sentence}".strip()
        if len(WORD.findall(text)) > at_least:
            return text
    raise ValueError(f"the reference sentences have fewer than {at_least} words")


def build_tokenizer(words: Iterable[str], size: int | None = None):
    """A word-level fast tokenizer: specials, then `words` (duplicates dropped), then
    synthetic tokens `x00001`, `x00002`... up to `size` entries when `size` is given."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = list(dict.fromkeys([*SPECIALS, *words]))
    tokens += [f"x{i:05d}" for i in range(1, max(0, (size or 0) - len(tokens)) + 1)]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # Marian appends </s> to every source sentence.
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
    )


def build_marian(
    folder: Path,
    *,
    words: Iterable[str],
    vocab_size: int | None = None,
    d_model: int = 16,
    layers: int = 1,
    heads: int = 2,
    ffn: int = 32,
    seed: int = 0,
    init_std: float = 0.02,
    eos_bias: float = 0.0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    min_new_tokens: int | None = None,
    positions: int = 512,
    suppress: Iterable[str] = (),
    **config_extra: object,
) -> Path:
    """Save a seeded random `MarianMTModel` + its tokenizer to `folder`; return `folder`.

    `vocab_size` pads the tokenizer with synthetic tokens, so the model has the embedding
    and lm-head cost of a real vocabulary (opus-mt: 58101). `eos_bias` raises the logit of
    </s> so a random model tends to stop by itself; `max_new_tokens` / `min_new_tokens` go
    into generation_config.json, where `load_translator`'s generate() call picks them up.
    `positions` is the model's max_position_embeddings (its position table, encoder and
    decoder alike); the tokenizer and generation_config.json still say 512, as a converted
    small model's may. `suppress` adds tokens to bad_words_ids: with a very negative
    `eos_bias`, suppressing <unk> makes a model that never stops and whose every output
    token survives decoding, so output lengths can be counted. Other keyword arguments go
    to `MarianConfig` (e.g. activation_function="swish").
    """
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # as load_translator does: no "Writing model shards"
    tokenizer = build_tokenizer(words, vocab_size)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_position_embeddings=positions,
        init_std=init_std,
        pad_token_id=pad,
        eos_token_id=eos,
        decoder_start_token_id=pad,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        **config_extra,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias[0, eos] = eos_bias
    # What opus-mt ships in generation_config.json, greedy unless num_beams says otherwise.
    bad_words = [[pad], *([tokenizer.convert_tokens_to_ids(t)] for t in suppress)]
    model.generation_config = GenerationConfig(
        decoder_start_token_id=pad,
        pad_token_id=pad,
        eos_token_id=eos,
        forced_eos_token_id=eos,
        num_beams=num_beams,
        do_sample=False,
        bad_words_ids=bad_words,
        max_length=512,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_marian(folder: Path) -> Path:
    """A ~45 kB Marian model whose vocabulary covers references.json.

    Weights are scaled up (init_std 0.5) so different inputs give different outputs, </s> is
    favoured so outputs end at different lengths (1 to 11 words on the reference sentences),
    and generation_config.json caps them at 12 tokens.
    """
    return build_marian(
        folder,
        words=reference_words(),
        seed=0,
        init_std=0.5,
        eos_bias=4.0,
        max_new_tokens=TINY_MAX_NEW_TOKENS,
    )


def make_rambling_marian(folder: Path, positions: int = 128) -> Path:
    """A tiny Marian model with `positions` positions that never ends a sentence by itself.

    </s> is pushed down (eos_bias -1e4) and <unk> is banned, and generation_config.json sets
    no max_new_tokens (only max_length 512, as opus-mt does): only subq's bounds stop it,
    which is the worst case for them. Word-level, so each output word is one token.
    """
    return build_marian(
        folder,
        words=reference_words(),
        seed=1,
        init_std=0.5,
        eos_bias=-1e4,
        positions=positions,
        suppress=["<unk>"],
    )


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a tiny random Marian model, built once per test session."""
    return make_tiny_marian(tmp_path_factory.mktemp("tiny-marian"))


@pytest.fixture(scope="session")
def rambling_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a 128-position Marian model that never stops by itself (per session)."""
    return make_rambling_marian(tmp_path_factory.mktemp("rambling-marian"))
