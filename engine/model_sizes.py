"""Model sizes: what a model will take before it is loaded (the memory budget's
estimates), and sizes and unloads as people read them."""

from __future__ import annotations

from .events import ModelUnloaded

# Parameter bytes in fp32, to judge whether a model fits before loading it.
WHISPER_BYTES = {
    "tiny": 151e6,
    "base": 290e6,
    "small": 967e6,
    "medium": 3.06e9,
    "large": 6.17e9,
    "turbo": 3.24e9,
}
HEADROOM = 1.25  # activations, decoding caches and allocator slack on top of the weights


def whisper_estimate(name: str) -> int:
    from .asr import model_path

    path = model_path(name)
    if path is not None and path.is_file():
        return path.stat().st_size * 2  # checkpoints are often fp16; loaded as fp32
    base = name.removesuffix(".en").split("-")[0]
    return int(WHISPER_BYTES.get(base, WHISPER_BYTES["large"]))


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def describe_unload(event: ModelUnloaded) -> str:
    """One line for a log: what was unloaded and how much memory came back."""
    where = "GPU" if event.nvml_used_before is not None else "RAM"
    ended = " (its worker ended)" if event.rss_after == 0 and event.rss_before else ""
    return (
        f"unloaded {event.kind} model {event.name} ({fmt_bytes(event.bytes)}): "
        f"{fmt_bytes(event.returned)} of {where} returned{ended}"
    )
