"""The GPU check's parts, each run in its own process by check.py (so each has its own time
budget, its own CUDA context and its own memory baseline): ASR speed and memory, translation,
and a provoked out-of-memory error.

Random weights, built directly on the device: the real large-v3-turbo (1.6 GB) and opus-mt
weights cannot travel to the GPU machine. Random weights decode garbage that never ends and
sets off every temperature fallback, so both sides are pinned to the same work: temperature
0 only, no compression/log-prob/no-speech thresholds, no timestamps, end-of-text suppressed,
a fixed budget of tokens per window. Speed then measures the decoding machinery, which is
what batching changes; accuracy is measured on the CPU with real tiny.en weights
(docs/benchmarks.md, figure 4d).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
RATE = 16_000
SPEECH_CLIPS = ("story.mp3", "long.mp3", "podcast.mp3", "talk.mp4", "lecture.mkv")

# large-v3-turbo's ModelDimensions (its checkpoint's "dims"); smoke: the same vocabulary, tiny
# widths, so the tokenizer and every code path are the real ones.
TURBO = dict(n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20,
             n_audio_layer=32, n_vocab=51866, n_text_ctx=448, n_text_state=1280,
             n_text_head=20, n_text_layer=4)  # fmt: skip
TINY = dict(TURBO, n_audio_state=64, n_audio_head=2, n_audio_layer=2, n_text_state=64,
            n_text_head=2, n_text_layer=2)  # fmt: skip
# Helsinki-NLP/opus-mt-en-de's MarianConfig; smoke: tiny widths.
OPUS_MT = dict(vocab_size=58101, d_model=512, encoder_layers=6, decoder_layers=6,
               encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
               decoder_ffn_dim=2048, max_position_embeddings=512, pad_token_id=58100,
               decoder_start_token_id=58100, eos_token_id=0)  # fmt: skip
OPUS_TINY = dict(OPUS_MT, vocab_size=1000, d_model=32, encoder_layers=1, decoder_layers=1,
                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                 decoder_ffn_dim=64, pad_token_id=999, decoder_start_token_id=999)  # fmt: skip


class Recorder:
    """Results of one part, rewritten to disk after every entry: a part stopped by its
    budget still leaves what it measured."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=1, default=str))
        print(f"  {key}: {json.dumps(value, default=str)[:200]}", flush=True)


def device() -> str:
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def memory_point(dev: str) -> dict[str, Any]:
    """torch reserved/allocated, NVML used by this process and by the whole device.

    The kit runs the stages in its own process (torch is here, unlike in `subq`), so it asks
    torch's allocator directly; the engine keeps no torch helpers since models left it."""
    import torch
    from subq.engine import memory

    cuda = dev.startswith("cuda") and torch.cuda.is_available()
    point: dict[str, Any] = {
        "torch_reserved": int(torch.cuda.memory_reserved(dev)) if cuda else None,
        "torch_allocated": int(torch.cuda.memory_allocated(dev)) if cuda else None,
        "rss": memory.rss_bytes(),
    }
    nvml = memory.Nvml()
    if nvml.ok and nvml.count():
        sample = nvml.sample(0)
        point.update(nvml_this_process=sample.this_process, nvml_device_used=sample.used,
                     device_name=sample.name)  # fmt: skip
    return point


def looped_speech(seconds: float) -> np.ndarray:
    """`seconds` of the committed speech clips end to end, looped (VAD needs real speech)."""
    from subq.engine import media

    clips = [media.decode_audio(DATA / name) for name in SPEECH_CLIPS]
    joined = np.concatenate(clips)
    reps = int(np.ceil(seconds * RATE / len(joined)))
    return np.tile(joined, reps)[: int(seconds * RATE)].astype(np.float32)


def random_whisper(dims: dict[str, int], dev: str) -> Any:
    """A Whisper with every parameter initialised on `dev` (`Whisper(dims)` leaves the
    decoder's positional embedding as `torch.empty`, which can hold NaN)."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    with torch.device(dev):
        model = Whisper(ModelDimensions(**dims))
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, torch.nn.LayerNorm):
                    p.fill_(1.0 if name == "weight" else 0.0)
                else:
                    p.normal_(0.0, 0.02)
    return model.eval()


def pinned(model: Any, tokens: int) -> dict[str, Any]:
    """The same decoding work per window on both sides (see the module docstring)."""
    from whisper.tokenizer import get_tokenizer

    tok = get_tokenizer(model.is_multilingual, num_languages=model.num_languages,
                        language="en", task="transcribe")  # fmt: skip
    # timestamp tokens too: random weights pick them, and the sequential loop would then cut
    # and re-seek its windows at random places
    timestamps = range(tok.timestamp_begin, model.dims.n_vocab)
    return dict(
        sample_len=tokens, suppress_tokens=[-1, tok.eot, *timestamps], without_timestamps=True
    )


def timed(fn: Callable[[], Any], dev: str) -> tuple[float, Any]:
    import torch

    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def part_asr(rec: Recorder, smoke: bool) -> None:
    """Sequential fp16 vs batched at 8/16/32, word timestamps apart, memory at each step."""
    import whisper
    from subq.engine import asr, memory
    from subq.engine.asr.whisper_batched import transcribe_whisper_batched

    dev = device()
    fp16 = dev.startswith("cuda")
    seconds = 60.0 if smoke else 600.0
    tokens = 8 if smoke else 100
    audio = looped_speech(seconds)
    rec.put(
        "asr_setup",
        dict(
            device=dev,
            audio_seconds=seconds,
            tokens_per_window=tokens,
            dims="tiny (smoke)" if smoke else "large-v3-turbo",
            fp16=fp16,
        ),
    )
    rec.put("mem_before_load", memory_point(dev))
    load_s, model = timed(lambda: random_whisper(TINY if smoke else TURBO, dev), dev)
    rec.put("load", dict(seconds=load_s, footprint=memory.model_bytes(model)))
    rec.put("mem_after_load", memory_point(dev))
    pin = pinned(model, tokens)
    # warm-up (kernels, cuBLAS handles) on one window, not timed
    whisper.decode(model, whisper.log_mel_spectrogram(
        whisper.pad_or_trim(audio[: 30 * RATE]), model.dims.n_mels, device=dev
    ).unsqueeze(0), whisper.DecodingOptions(fp16=fp16, temperature=0.0, **pin))  # fmt: skip

    windows: list[int] = []

    def counted(mel: Any, options: Any) -> Any:
        windows.append(1)
        return whisper.decode(model, mel, options)

    model.decode = counted  # the loop calls model.decode once per window (and fallback)

    def sequential(words: bool) -> Any:
        windows.clear()
        return whisper.transcribe(model, audio, temperature=(0.0,), fp16=fp16, verbose=None,
                                  compression_ratio_threshold=None, logprob_threshold=None,
                                  no_speech_threshold=None, condition_on_previous_text=False,
                                  word_timestamps=words, language="en", **pin)  # fmt: skip

    def batched(batch: int, words: bool, samples: np.ndarray = audio) -> Any:
        opts = asr.TranscribeOptions(language="en", batch_size=batch, fp16=fp16,
                                     temperature=(0.0,), word_timestamps=words,
                                     no_speech_threshold=1.0, logprob_threshold=-1e9)  # fmt: skip
        return transcribe_whisper_batched(model, samples, opts, decoding=pin)

    # word timing compiles its kernels on first use (triton on CUDA, numba on the CPU):
    # pay that here, untimed, so the timed stages measure the alignment itself
    wall, _ = timed(lambda: batched(2, True, audio[: 60 * RATE]), dev)
    rec.put("word_timing_warm_up_s", wall)

    stages: list[tuple[str, Callable[[], Any]]] = [
        ("sequential", lambda: sequential(False)),
        *[(f"batched-{b}", lambda b=b: batched(b, False)) for b in (8, 16, 32)],
        ("sequential+words", lambda: sequential(True)),
        ("batched-16+words", lambda: batched(16, True)),
    ]
    for name, fn in stages:
        if dev.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        wall, result = timed(fn, dev)
        calls = result.windows if hasattr(result, "windows") else len(windows)
        peak = None
        if dev.startswith("cuda"):
            import torch

            peak = int(torch.cuda.max_memory_reserved())
        memory.clean(dev)
        rec.put(
            f"asr:{name}",
            dict(
                seconds=wall,
                realtime=seconds / wall,
                calls=calls,
                peak_reserved=peak,
                after_cleanup=memory_point(dev),
            ),
        )
    model = None  # the closures above hold the name, not the model
    memory.clean(dev)
    rec.put("mem_after_unload", memory_point(dev))


def part_translate(rec: Recorder, smoke: bool) -> None:
    """Random MarianMTModel at opus-mt's dimensions: 64 sentences at batch 32 vs batch 1,
    the same number of new tokens per sentence on both sides."""
    import torch
    from subq.engine import memory
    from transformers import MarianConfig, MarianMTModel

    dev = device()
    torch.manual_seed(0)
    config = MarianConfig(**(OPUS_TINY if smoke else OPUS_MT))
    with torch.device(dev):
        model = MarianMTModel(config).eval()
    if dev.startswith("cuda"):
        model = model.half()
    rec.put("mt_footprint", memory.model_bytes(model))
    n, src_len, new = (8, 12, 6) if smoke else (64, 24, 32)
    ids = torch.randint(1, config.vocab_size - 2, (n, src_len), device=dev)

    def run(batch: int) -> None:
        with torch.inference_mode():
            for i in range(0, n, batch):
                model.generate(ids[i : i + batch], max_new_tokens=new, min_new_tokens=new,
                               num_beams=1, do_sample=False)  # fmt: skip

    run(min(n, 4))  # warm-up
    for batch in (32, 1):
        wall, _ = timed(lambda b=batch: run(b), dev)
        memory.clean(dev)
        rec.put(f"mt:batch-{batch}", dict(seconds=wall, sentences_per_s=n / wall))
    model = None
    memory.clean(dev)
    rec.put("mt_mem_after_unload", memory_point(dev))


def part_oom(rec: Recorder, smoke: bool) -> None:
    """Ask for twice the free memory, catch torch's OutOfMemoryError, clean up, and show
    the device works again with memory back where it was."""
    import torch
    from subq.engine import memory

    dev = device()
    if not dev.startswith("cuda"):
        rec.put("oom", dict(skipped="no CUDA device"))
        return
    before = memory_point(dev)
    free, _total = torch.cuda.mem_get_info()
    try:
        hog = torch.empty(int(free * 2), dtype=torch.uint8, device=dev)
        del hog
        rec.put("oom", dict(provoked=False))
        return
    except torch.OutOfMemoryError as exc:
        message = str(exc).splitlines()[0][:160]
    memory.clean(dev)
    x = torch.randn(4096, 4096, device=dev)
    ok = bool(torch.isfinite(x @ x).all())
    del x
    memory.clean(dev)
    rec.put("oom", dict(provoked=True, message=message, recovered=ok, before=before,
                        after=memory_point(dev)))  # fmt: skip


PARTS: dict[str, Callable[[Recorder, bool], None]] = {
    "asr": part_asr,
    "translate": part_translate,
    "oom": part_oom,
}
