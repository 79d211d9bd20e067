"""A tiny random-weight Marian translation model, saved the way a real one is on disk.

`make_tiny_marian(folder)` writes a `MarianMTModel` (16-dim, one encoder and one decoder
layer) and a word-level `PreTrainedTokenizerFast` whose vocabulary covers every word of
tests/data/references.json, both with `save_pretrained`, so `load_translator(str(folder), ...)`
loads it through AutoTokenizer / AutoModelForSeq2SeqLM exactly as it loads opus-mt. Weights
are seeded, and the tests decode greedily, so output is deterministic (if meaningless).

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
WORD = re.compile(r"\w+|[^\w\s]")  # the same split as tokenizers' Whitespace pre-tokenizer


def reference_words() -> list[str]:
    """Every distinct word and punctuation mark of references.json, in first-seen order."""
    refs = json.loads((DATA / "references.json").read_text(encoding="utf-8"))
    return list(dict.fromkeys(w for text in refs.values() for w in WORD.findall(text)))


def reference_sentences() -> list[str]:
    """references.json split into sentences: subtitle-like cues."""
    refs = json.loads((DATA / "references.json").read_text(encoding="utf-8"))
    return [s for text in refs.values() for s in re.split(r"(?<=[.!?])\s+", text) if s]


def build_tokenizer(words: Iterable[str]):
    """A word-level fast tokenizer: specials, then `words` (duplicates dropped)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(dict.fromkeys([*SPECIALS, *words]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # Marian appends </s> to every source sentence.
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        model_max_length=512,
    )


def build_marian(folder: Path, *, words: Iterable[str], vocab_size: int | None = None,
                 d_model: int = 16, layers: int = 1, heads: int = 2, ffn: int = 32,
                 seed: int = 0, init_std: float = 0.02, eos_bias: float = 0.0,
                 max_length: int = 64) -> Path:
    """Save a random `MarianMTModel` + tokenizer to `folder`; return `folder`.

    `vocab_size` defaults to the tokenizer's size; a larger one (ids the tokenizer never
    produces) gives a model the embedding / lm-head cost of a real vocabulary.
    """
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    tokenizer = build_tokenizer(words)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = MarianConfig(
        vocab_size=max(vocab_size or 0, len(tokenizer)),
        d_model=d_model,
        encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_position_embeddings=512, init_std=init_std,
        pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad,
        forced_eos_token_id=eos,
        scale_embedding=True, share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias[0, eos] = eos_bias
    model.generation_config = GenerationConfig(
        decoder_start_token_id=pad, pad_token_id=pad, eos_token_id=eos,
        bad_words_ids=[[pad]], num_beams=1, do_sample=False, max_length=max_length,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_marian(folder: Path) -> Path:
    """A ~100 kB Marian model whose vocabulary covers references.json; loads in well under 1 s."""
    return build_marian(folder, words=reference_words())


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a tiny random Marian model, built once per test session."""
    return make_tiny_marian(tmp_path_factory.mktemp("tiny-marian"))
