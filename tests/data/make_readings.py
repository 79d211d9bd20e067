"""Make the long readings: minutes of distinct spoken sentences, for what depends on length.

    python tests/data/make_readings.py         # reading.mp3 and reading_long.mp3

Why: a transcript that drifts from the library's, or skips a stretch of speech, shows only
on files of ordinary length (issue 21: nothing caught it on clips of seconds). Each
reading is a list of distinct plain sentences drawn from a seeded generator (no sentence
repeats, so a skipped or repeated one is visible), spoken six to a paragraph by espeak-ng
with a second of silence between paragraphs, 16 kHz mono MP3 at 16 kbit/s.

* ``reading.mp3``       150 sentences, about 10 minutes: tiny.en decodes every window
                        greedily (no fallback), so subq's transcript can equal each
                        library's exactly
* ``reading_long.mp3``  210 sentences, about 14 minutes: one window falls back to
                        sampling, after which greedy decoding with the previous-text prompt
                        skips 6.7 s of speech (what the gap refill is for)

Needs espeak-ng and PyAV, like make_clips.py, whose helpers it uses; the outputs and their
texts (in references.json) are committed.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from make_clips import HERE, paragraphs_mp3, pick_codec, report, update_reference

SUBJECTS = (
    "my neighbour", "the old teacher", "a young doctor", "our driver", "the baker",
    "my cousin", "a quiet student", "the farmer", "her brother", "the captain",
    "a tired nurse", "the painter", "our guide", "the pilot", "a careful writer",
    "the singer", "my uncle", "the shop keeper", "a small boy", "the gardener",
)  # fmt: skip
VERBS = (
    "carried", "painted", "opened", "cleaned", "found", "bought", "repaired", "closed",
    "moved", "washed", "counted", "watched", "dropped", "lifted", "sold", "borrowed",
    "checked", "measured", "covered", "pushed",
)  # fmt: skip
ADJECTIVES = (
    "red", "heavy", "wooden", "broken", "shiny", "narrow", "empty", "warm", "dusty",
    "bright", "soft", "round", "green", "old", "tall", "yellow", "cold", "square", "quiet",
    "new",
)  # fmt: skip
OBJECTS = (
    "box", "window", "chair", "basket", "bicycle", "lamp", "boat", "door", "table",
    "bucket", "ladder", "kettle", "blanket", "clock", "fence", "bottle", "mirror", "wagon",
    "barrel", "bench",
)  # fmt: skip
PLACES = (
    "near the river", "behind the school", "in the garden", "before breakfast",
    "after the storm", "at the market", "under the bridge", "on the hill",
    "by the station", "in the morning", "late at night", "next to the church",
    "during the rain", "at the harbour", "in the kitchen", "beside the road", "after lunch",
    "on the porch", "in the barn", "at the end of the day",
)  # fmt: skip
READINGS = {"reading.mp3": (7, 150), "reading_long.mp3": (11, 210)}  # name: (seed, sentences)
PER_PARAGRAPH = 6
PAUSE_SECONDS = 1.0


def sentences(seed: int, count: int) -> list[str]:
    """`count` distinct sentences, the same for the same seed."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        subject, verb = rng.choice(SUBJECTS), rng.choice(VERBS)
        adjective, thing, place = rng.choice(ADJECTIVES), rng.choice(OBJECTS), rng.choice(PLACES)
        sentence = f"{subject.capitalize()} {verb} the {adjective} {thing} {place}."
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def make_reading(name: str, seed: int, count: int, mp3: str, tmp: Path) -> Path:
    said = sentences(seed, count)
    paragraphs = [" ".join(said[i : i + PER_PARAGRAPH]) for i in range(0, count, PER_PARAGRAPH)]
    out = paragraphs_mp3(paragraphs, PAUSE_SECONDS, mp3, tmp, HERE / name)
    update_reference(name, " ".join(said))
    return out


def main() -> None:
    mp3 = pick_codec("libmp3lame", "mp3")
    with tempfile.TemporaryDirectory(prefix="subq-readings-") as tmp:
        made = [
            make_reading(n, seed, count, mp3, Path(tmp)) for n, (seed, count) in READINGS.items()
        ]
    report([*made, HERE / "references.json"])


if __name__ == "__main__":
    main()
