"""Seeded temperature sampling on the CTranslate2 Whisper model already loaded (issue 28).

Why: a window whose greedy decode fails Whisper's quality bars is sampled again at rising
temperatures, and exact resume needs those samples seeded per window. CTranslate2 has no
per-call seed: `set_random_seed` reaches a worker thread's generator only the first time
that thread samples (src/random.cc, a thread_local mt19937; OpenNMT/CTranslate2#1757). subq
used to sample on a freshly seeded replica of the model, a second copy of the weights per
fallback window: seconds and 1.5-3 GB of GPU memory with large-v3, on the device whose
memory subq exists to manage. Here the model stays as it is and we choose every token.

How: `generate(..., return_logits_vocab=True)` returns each step's logits after
CTranslate2's logits processors (suppress_tokens, suppress_blank, timestamp rules) and
before the log-softmax, and tokens after the SOT sequence in the prompt are a prefix the
decoder is forced through, their rows returned too. We draw each token with a numpy
Generator seeded by the window seed (Gumbel-max over softmax(logits / T), the distribution
CTranslate2's own sampling with `sampling_topk=0` draws from), and ask the model for rows
along the tokens we chose. Which rows are exactly the ones native sampling would use:

* the window's greedy call's rows (every rule applied by CTranslate2), while our draws
  equal the greedy tokens;
* in a call with prefix Q: the rows of Q and the first free row carry only suppress_tokens
  and <|notimestamps|> (CTranslate2 counts its timestamp rules from the prefix's end); we
  apply the timestamp rules over our whole sequence (`Rules`);
* later rows follow CTranslate2's greedy tokens: ours while our draw equals its token and
  its rules disabled nothing ours keep; else its tokens go into the next call's prefix
  (`draft`), so those rows come back clean.

Checked against CTranslate2 4.8.5 row for row (argmax equals native greedy; native samples
replayed through these rows and rules match every disabled set and logit). The cost: each
call re-steps its prefix, so a sample takes several times a native decode of the same
tokens (0.6-7 s per window for tiny.en on 2 CPU cores, against 0.3-0.8 s for a replica);
windows that need no fallback pay nothing. Draws differ from the replica's mt19937 ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LOWEST = float(np.finfo(np.float32).min)
LOOKAHEAD = 8  # greedy steps asked for beyond our last draw, in the hope they match;
# doubled after each call whose steps all matched (a cold sample mostly follows greedy),
# back to this after a draw leaves them. Rows do not depend on where calls begin or end,
# so neither do the samples.


@dataclass(frozen=True)
class Sampled:
    """One sample in the shape of a WhisperGenerationResult, as the fallback loop reads it."""

    sequences_ids: list[list[int]]
    scores: list[float]  # sum of log-probs (EOT included) / len(tokens) ** length_penalty
    no_speech_prob: float
    calls: int = 0


@dataclass(frozen=True)
class Vocabulary:
    """The tokenizer's special tokens and the suppressed list (no -1: expanded already)."""

    sot: int
    eot: int
    no_timestamps: int
    suppress: tuple[int, ...]


class _Rows:
    """A generation result's per-step logits, each turned on first use into float32 numpy
    with disabled entries at LOWEST (a GPU row is copied to the host)."""

    def __init__(self, result: Any) -> None:
        self.raw = result.logits[0]
        self.done: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, j: int) -> np.ndarray:
        if j not in self.done:
            row = self.raw[j]
            if row.device != "cpu":
                import ctranslate2

                row = row.to_device(ctranslate2.Device.cpu)
            x = np.asarray(row)
            low = np.finfo(x.dtype).min
            x = x.astype(np.float32)
            x[(x <= low) | np.isneginf(x)] = LOWEST
            self.done[j] = x
        return self.done[j]


class Rules:
    """CTranslate2's ApplyTimestampRules (src/models/whisper.cc) from the second step on,
    over the whole sampled sequence, plus suppress_tokens and <|notimestamps|>."""

    def __init__(self, vocab: Vocabulary, size: int) -> None:
        self.eot, self.first_timestamp = vocab.eot, vocab.no_timestamps + 1
        self.base = np.zeros(size, bool)
        self.base[[t for t in vocab.suppress if t >= 0]] = True
        self.base[vocab.no_timestamps] = True

    def static(self, seq: list[int]) -> tuple[np.ndarray, bool]:
        """The tokens disabled by the sequence alone; whether the probability check applies."""
        b, m, last = self.first_timestamp, self.base.copy(), seq[-1]
        if last >= b:
            if (seq[-2] if len(seq) > 1 else last) >= b:
                m[b:] = True  # a timestamp pair: text or EOT next
                return m, False
            m[: self.eot] = True  # after a lone timestamp: a timestamp or EOT
            m[b:last] = True
            return m, True
        for t in reversed(seq):
            if t >= b:
                m[b : t + 1] = True  # timestamps only increase
                break
        return m, True

    def apply(self, x: np.ndarray, seq: list[int]) -> np.ndarray:
        m, check = self.static(seq)
        y = np.where(m, LOWEST, x)
        if check:
            lp = log_softmax(y)
            if _logsumexp(lp[self.first_timestamp :]) > lp[: self.first_timestamp].max():
                y[: self.first_timestamp] = LOWEST  # a timestamp is likelier than any text
        return y


def log_softmax(x: np.ndarray) -> np.ndarray:
    z = np.where(x <= LOWEST, -np.inf, x.astype(np.float64))
    top = z.max()
    return z - (top + np.log(np.exp(z - top).sum()))


def _logsumexp(x: np.ndarray) -> float:
    top = x.max()
    return float(top + np.log(np.exp(x - top).sum())) if np.isfinite(top) else float("-inf")


def _draw(x: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """softmax(x / T) by Gumbel-max: one uniform per vocabulary entry each step, so where
    the generator stands depends only on the step."""
    z = np.where(x <= LOWEST, -np.inf, x.astype(np.float64))
    return int(np.argmax(z / temperature - np.log(-np.log(rng.random(z.shape[0])))))


def _start_step(prompt: list[int], vocab: Vocabulary) -> int:
    """CTranslate2's start_step: the prompt tokens it forwards at once."""
    k = prompt.index(vocab.sot)
    while k < len(prompt) and vocab.sot <= prompt[k] <= vocab.no_timestamps:
        k += 1
    return k - 1


def _max_length(start_step: int, steps: int) -> int:
    """generate's max_length for `steps` decoder steps, prefix included: it runs
    min(L // 2, L - start_step)."""
    return start_step + steps if start_step >= steps else 2 * steps


def seeded_sample(
    model: Any,
    encoder_output: Any,
    prompt: list[int],
    vocab: Vocabulary,
    *,
    temperature: float,
    seed: int,
    greedy: Any,
    max_length: int,
    length_penalty: float = 1.0,
    suppress_blank: bool = True,
    max_initial_timestamp_index: int = 50,
) -> Sampled:
    """One seeded sample of one window. `greedy`: the window's greedy result, made with
    return_logits_vocab=True (its rows serve while our draws follow it)."""
    rng = np.random.default_rng(seed)
    start_step = _start_step(prompt, vocab)
    limit = min(max_length // 2, max_length - start_step)  # the native call's token budget
    seq: list[int] = []
    cum, calls = 0.0, 0
    greedy_rows = _Rows(greedy)
    rules = Rules(vocab, len(greedy_rows[0]))

    def take(x: np.ndarray) -> bool:
        """Draw at this row (our rules applied past the first); True when the sample ends."""
        nonlocal cum
        y = rules.apply(x, seq) if seq else x  # the first row has CTranslate2's own rules
        token = _draw(y, temperature, rng)
        cum += float(log_softmax(y)[token])
        if token == vocab.eot:
            return True
        seq.append(token)
        return len(seq) >= limit

    done, tokens = False, greedy.sequences_ids[0]
    for j in range(len(greedy_rows)):
        done = take(greedy_rows[j])
        if done or j >= len(tokens) or seq[-1] != tokens[j]:
            break
    draft: list[int] = []
    ahead = LOOKAHEAD
    while not done:
        draft = draft[: max(0, limit - len(seq) - 1)]
        prefix = seq + draft
        steps = min(len(prefix) + 1 + (ahead if prefix else 0), limit)
        result = model.generate(
            encoder_output,
            [prompt + prefix],
            beam_size=1,
            sampling_topk=1,
            max_length=_max_length(start_step, steps),
            return_logits_vocab=True,
            suppress_blank=suppress_blank and not prefix,
            suppress_tokens=list(vocab.suppress),
            max_initial_timestamp_index=max_initial_timestamp_index,
        )[0]
        calls += 1
        rows, theirs = _Rows(result), result.sequences_ids[0]  # prefix + their greedy tokens
        j, draft = len(seq), []
        ahead *= 2
        while j < len(rows):
            if j > 0 and seq[-1] != theirs[j - 1]:
                ahead = LOOKAHEAD
                break  # our draw left the tokens this call decoded along
            if j > len(prefix):
                disabled, _ = rules.static(seq)
                if np.any((rows[j] <= LOWEST) & ~disabled):
                    draft = theirs[j:]  # its rules here differ from ours: ask again, clean
                    break
            done = take(rows[j])
            if done:
                break
            j += 1
    score = cum / max(len(seq), 1) ** length_penalty
    return Sampled([seq], [score], float(greedy.no_speech_prob), calls)
