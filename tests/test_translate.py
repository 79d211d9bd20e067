"""Tests for subq.engine.translate on a tiny random Marian model loaded like a real one.

The model (tests/translation_fixture.py) is built once per session, saved with
save_pretrained and loaded through `load_translator`, i.e. AutoTokenizer /
AutoModelForSeq2SeqLM with local_files_only, the path users take. It decodes greedily, so
its (meaningless) output is deterministic and can be compared across batch sizes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from subq.engine import faults
from subq.engine.translate import (
    DEFAULT_TEMPLATE,
    Limits,
    TranslationError,
    Translator,
    load_translator,
    model_limits,
    model_name_for,
)
from translation_fixture import (
    TINY_MAX_NEW_TOKENS,
    long_cue,
    rambling_marian,
    reference_sentences,
    tiny_marian,
)

# The session fixtures, for this module; redundant (but harmless) once conftest.py imports them.
__all__ = ["rambling_marian", "tiny_marian"]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """A 16-dim model is all per-op overhead: one thread is several times faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def fresh_faults() -> Iterator[None]:
    faults.reset()
    yield
    faults.reset()


@pytest.fixture(scope="module")
def translator(tiny_marian: Path) -> Translator:
    return load_translator(str(tiny_marian), "cpu")


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return reference_sentences()


@pytest.fixture(scope="module")
def unbatched(translator: Translator, sentences: list[str]) -> list[str]:
    """The reference: every sentence translated in a batch of its own."""
    return translator.translate(sentences, "en", "de", batch_size=1)


def record_batches(translator: Translator, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Spy on what is sent to the model, one list of texts per generate() batch."""
    sent: list[list[str]] = []
    real = translator._generate

    def spy(texts: list[str], src: str, tgt: str) -> list[str]:
        sent.append(list(texts))
        return real(texts, src, tgt)

    monkeypatch.setattr(translator, "_generate", spy)
    return sent


def test_fixture_loads_as_a_marian_model(tiny_marian: Path, translator: Translator) -> None:
    files = {p.name for p in tiny_marian.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors"} <= files
    assert {"tokenizer.json", "tokenizer_config.json"} <= files
    assert translator.family == "marian"
    assert translator.model.config.model_type == "marian"
    assert translator.model.generation_config.max_new_tokens == TINY_MAX_NEW_TOKENS
    assert translator.tokenizer.pad_token == "<pad>"
    # Every reference word is in the vocabulary: no <unk> in any encoded sentence.
    unk = translator.tokenizer.unk_token_id
    assert all(unk not in ids for ids in translator.tokenizer(reference_sentences()).input_ids)


def test_output_is_deterministic_and_input_dependent(
    translator: Translator, sentences: list[str], unbatched: list[str]
) -> None:
    # (test_batching_gives_the_unbatched_texts[1] translates them again, for determinism)
    assert all(unbatched), "the fixture model should translate every sentence to something"
    assert len(set(unbatched)) >= len(sentences) // 2, "outputs should depend on the input"
    lengths = {len(t.split()) for t in unbatched}
    assert len(lengths) > 2, "outputs should end at different lengths (ragged batches)"


def generate_calls(translator: Translator, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Spy on the keyword arguments of every model.generate() call."""
    calls: list[dict] = []
    real = translator.model.generate

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(translator.model, "generate", spy)
    return calls


def test_generation_cap_follows_the_input_and_the_model(
    translator: Translator,
    sentences: list[str],
    unbatched: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert max(len(t.split()) for t in unbatched) < TINY_MAX_NEW_TOKENS
    calls = generate_calls(translator, monkeypatch)
    # The sentence whose output stops soonest by itself: fast whatever the cap.
    short = [min(zip(unbatched, sentences, strict=True), key=lambda p: len(p[0].split()))[1]]
    n = len(translator.tokenizer(short[0]).input_ids)
    translator.translate(short, "en", "de", batch_size=1)
    assert calls[-1]["max_new_tokens"] == TINY_MAX_NEW_TOKENS  # generation_config.json's 12
    # A model without a max_new_tokens of its own (opus-mt sets only max_length 512): the
    # input's length bounds it, 2n + 10 for a cue of n tokens.
    monkeypatch.setattr(translator.model.generation_config, "max_new_tokens", None)
    translator.translate(short, "en", "de", batch_size=1)
    assert calls[-1]["max_new_tokens"] == 2 * n + 10
    # A min_new_tokens the model asks for is kept (benchmarks pin min = max).
    monkeypatch.setattr(translator.model.generation_config, "min_new_tokens", 3 * n + 10)
    translator.translate(short, "en", "de", batch_size=1)
    assert calls[-1]["max_new_tokens"] == 3 * n + 10


def test_one_output_per_input_in_input_order(
    translator: Translator, sentences: list[str], unbatched: list[str]
) -> None:
    backwards = translator.translate(sentences[::-1], "en", "de", batch_size=4)
    assert backwards == unbatched[::-1]
    # Duplicates are translated each (and identically), not collapsed.
    doubled = translator.translate(sentences[:3] * 2, "en", "de", batch_size=4)
    assert doubled == unbatched[:3] * 2


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batching_gives_the_unbatched_texts(
    translator: Translator,
    sentences: list[str],
    unbatched: list[str],
    batch_size: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = record_batches(translator, monkeypatch)
    progress: list[tuple[int, int]] = []
    out = translator.translate(
        sentences, "en", "de", batch_size, on_batch=lambda d, t: progress.append((d, t))
    )
    assert out == unbatched
    assert [len(b) for b in sent] == batch_sizes(len(sentences), batch_size)
    assert sorted(t for b in sent for t in b) == sorted(sentences)
    assert progress[-1] == (len(sentences), len(sentences))
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def batch_sizes(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]


def test_empty_texts_stay_empty_and_are_not_sent(
    translator: Translator,
    sentences: list[str],
    unbatched: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = record_batches(translator, monkeypatch)
    texts = ["", sentences[0], "   ", sentences[1], "\n", sentences[2], ""]
    progress: list[tuple[int, int]] = []
    out = translator.translate(
        texts, "en", "de", batch_size=2, on_batch=lambda d, t: progress.append((d, t))
    )
    assert out == ["", unbatched[0], "", unbatched[1], "", unbatched[2], ""]
    assert sorted(t for b in sent for t in b) == sorted(sentences[:3])
    assert progress[-1] == (3, 3)


def test_nothing_to_translate_sends_nothing(
    translator: Translator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = record_batches(translator, monkeypatch)
    assert translator.translate([], "en", "de", batch_size=8) == []
    assert translator.translate(["", " "], "en", "de", batch_size=8) == ["", ""]
    assert sent == []


@pytest.mark.parametrize(("faults_armed", "halvings"), [(1, [8]), (4, [8, 4, 2, 1])])
def test_oom_halves_the_batch_size_and_still_translates_everything(
    translator: Translator,
    sentences: list[str],
    unbatched: list[str],
    monkeypatch: pytest.MonkeyPatch,
    faults_armed: int,
    halvings: list[int],
) -> None:
    monkeypatch.setenv("SUBQ_FAULTS", f"translate:OOM:{faults_armed}")
    sent = record_batches(translator, monkeypatch)
    ooms: list[int] = []
    progress: list[tuple[int, int]] = []
    out = translator.translate(
        sentences, "en", "de", 16, on_oom=ooms.append, on_batch=lambda d, t: progress.append((d, t))
    )
    assert ooms == halvings
    assert out == unbatched
    assert max(len(b) for b in sent) == halvings[-1]  # the failed batches never ran
    assert progress[-1] == (len(sentences), len(sentences))


def test_oom_at_batch_size_one_is_raised(
    translator: Translator, sentences: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBQ_FAULTS", "translate:OOM:2")  # 2 -> 1 -> out of memory again
    ooms: list[int] = []
    with pytest.raises(MemoryError, match="out of memory"):
        translator.translate(sentences, "en", "de", batch_size=2, on_oom=ooms.append)
    assert ooms == [1]


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest sets HF_HUB_OFFLINE=1, but huggingface_hub reads it once, at import, and a
    session fixture may have imported it first: set the flag it really reads as well."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def assert_one_line(message: str, *parts: str) -> None:
    assert "\n" not in message and message.strip() == message
    for part in parts:
        assert part in message


def test_missing_model_name_fails_fast_with_one_line(
    translator: Translator, hub_offline: None
) -> None:
    name = model_name_for(None, "en", "zz")
    start = time.monotonic()
    with pytest.raises(TranslationError) as info:
        load_translator(name, "cpu")
    elapsed = time.monotonic() - start
    assert elapsed < 5, f"a missing model took {elapsed:.1f} s to report"
    assert_one_line(str(info.value), name)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unreachable_hub_fails_fast_without_offline_mode(tmp_path: Path) -> None:
    """A user without HF_HUB_OFFLINE on a machine with no route to the hub: huggingface_hub
    would retry for most of a minute; subq checks the endpoint once and says so."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens
    env["HF_HOME"] = str(tmp_path / "hf")
    code = (
        "from subq.engine.translate import load_translator, TranslationError\n"
        "try:\n    load_translator('Helsinki-NLP/opus-mt-en-zz', 'cpu')\n"
        "except TranslationError as e:\n    print(e)\n"
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - start
    assert_one_line(proc.stdout.strip(), "opus-mt-en-zz", "not reachable")
    assert elapsed < 30, f"took {elapsed:.1f} s"


def test_missing_folder_names_the_folder(tmp_path: Path, hub_offline: None) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(TranslationError) as info:
        load_translator(str(missing), "cpu")
    assert_one_line(str(info.value), str(missing), "no such")


def test_folder_without_a_model_names_the_folder(tmp_path: Path, hub_offline: None) -> None:
    folder = tmp_path / "just-subtitles"
    folder.mkdir()
    (folder / "talk.en.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHi\n")
    with pytest.raises(TranslationError) as info:
        load_translator(str(folder), "cpu")
    assert_one_line(str(info.value), str(folder))


@pytest.mark.parametrize(
    ("broken", "expect"),
    [
        ("junk-config", "not a transformers model"),
        ("no-tokenizer", "no usable tokenizer"),
        ("no-tokenizer-json", "no usable tokenizer"),  # transformers' error is several lines
        ("no-weights", "not a transformers seq2seq model"),
    ],
)
def test_broken_model_folder_names_the_folder(
    tiny_marian: Path, tmp_path: Path, hub_offline: None, broken: str, expect: str
) -> None:
    folder = Path(shutil.copytree(tiny_marian, tmp_path / broken))
    if broken == "junk-config":
        (folder / "config.json").write_text(json.dumps({"hello": "world"}))
    elif broken == "no-tokenizer":
        for path in folder.glob("tokenizer*"):
            path.unlink()
    elif broken == "no-tokenizer-json":
        (folder / "tokenizer.json").unlink()
    else:
        (folder / "model.safetensors").unlink()
    with pytest.raises(TranslationError) as info:
        load_translator(str(folder), "cpu")
    assert_one_line(str(info.value), str(folder), expect)


def test_model_name_for() -> None:
    assert model_name_for(None, "en", "de") == DEFAULT_TEMPLATE.format(src="en", tgt="de")
    assert model_name_for("Helsinki-NLP/opus-mt-{src}-{tgt}", "de", "fr") == (
        "Helsinki-NLP/opus-mt-de-fr"
    )
    assert model_name_for("/models/nllb-600M", "en", "fr") == "/models/nllb-600M"


@pytest.fixture(scope="module")
def rambler(rambling_marian: Path) -> Translator:
    """The 128-position model that never stops by itself: only subq's bounds stop it."""
    return load_translator(str(rambling_marian), "cpu")


def out_tokens(translator: Translator, text: str) -> int:
    """Tokens of an output as the model's tokenizer counts them (word-level: one a word)."""
    return len(translator.tokenizer(text, add_special_tokens=False).input_ids)


def test_limits_come_from_the_position_table_and_the_generation_config(
    translator: Translator, rambler: Translator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 128 positions; tokenizer and generation_config.json say 512, the table decides.
    assert rambler.model.config.max_position_embeddings == 128
    assert rambler.tokenizer.model_max_length == 512
    assert model_limits(rambler.model, rambler.tokenizer) == Limits(128, 127, 0)
    # The tiny model: 512 positions, max_new_tokens 12 in its generation_config.json.
    tiny = Limits(512, TINY_MAX_NEW_TOKENS, 0)
    assert model_limits(translator.model, translator.tokenizer) == tiny
    # A smaller tokenizer limit counts; transformers' "no limit" placeholder does not.
    for given, source in ((64, 64), (int(1e30), 128)):
        monkeypatch.setattr(rambler.tokenizer, "model_max_length", given)
        assert model_limits(rambler.model, rambler.tokenizer).source == source
    # A max_length the model sets counts (less the decoder start token).
    monkeypatch.setattr(rambler.model.generation_config, "max_length", 50)
    assert model_limits(rambler.model, rambler.tokenizer).new_tokens == 49


def test_long_and_ordinary_cues_translate_on_a_128_position_model(
    rambler: Translator, sentences: list[str]
) -> None:
    """The issue's model: 128 positions and no max_new_tokens. Before, every cue failed
    with "IndexError: index out of range in self" (decoder past position 127 under the
    fixed cap of 256; a cue over 128 tokens already in the encoder)."""
    long = long_cue(200)
    texts = [sentences[0], long, "", sentences[3], long + " Again.", sentences[1]]
    alone = [rambler.translate([t], "en", "de", batch_size=1)[0] for t in texts]
    batched = rambler.translate(texts, "en", "de", batch_size=4)
    assert len(batched) == len(texts)
    assert batched == alone  # order kept, and each cue as it translates alone
    assert all(batched[i] for i in (0, 1, 3, 4, 5)) and batched[2] == ""
    # The long cues fill the 127 new tokens the table allows (the last is the forced </s>).
    assert [out_tokens(rambler, batched[i]) for i in (1, 4)] == [126, 126]


def test_generation_is_bounded_by_the_input_length(
    rambler: Translator, sentences: list[str]
) -> None:
    """A model that never emits </s> by itself stops at 2n + 10 new tokens for an n-token
    cue (</s> counted), in a batch of longer cues too, not at a fixed cap."""
    texts = sorted(sentences[:8], key=len)
    out = rambler.translate(texts, "en", "de", batch_size=8)
    for text, result in zip(texts, out, strict=True):
        n = len(rambler.tokenizer(text).input_ids)
        assert out_tokens(rambler, result) == 2 * n + 10 - 1, text  # + the forced </s>
    assert len({len(t.split()) for t in texts}) > 2, "the cues should differ in length"
