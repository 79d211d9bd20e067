"""Does a file have subtitles already? `--skip-subtitled` asks before transcribing it.

A file is skipped when each language asked for has a subtitle: a sidecar next to the file
or where its subtitles would be written (NAME.srt, NAME.en.srt, NAME.eng.forced.vtt,
NAME.English.ass ...), or a subtitle stream inside its container tagged with that language
(the prober lists them, prober.py; nothing here opens media). The languages asked for are
the spoken one (as given, "en" for an English-only model or --task translate) and each
--translate-to. An untagged subtitle counts for the spoken language only; where the spoken
language is unknown (detected later), any subtitle counts for it that is not in a language
asked for as a translation. A file subq wrote itself (its sum still as subq wrote it) is
not somebody else's subtitle: its own outputs are judged by skip-if-done as always.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .outputs import file_sum
from .settings import Settings
from .store import Store

SUBTITLE_EXTENSIONS = (".srt", ".vtt", ".ass", ".ssa", ".sub")
MODIFIERS = {"forced", "sdh", "cc", "hi", "default", "full"}  # NAME.en.forced.srt

# ISO 639-1, the 639-2 codes (bibliographic and terminology) and the English name of the
# languages subtitles are most often tagged with: what sidecar names and containers write.
_TABLE = """
en eng english; fr fre fra french; de ger deu german; es spa spanish; it ita italian;
pt por portuguese; nl dut nld dutch; pl pol polish; ru rus russian; uk ukr ukrainian;
cs cze ces czech; sv swe swedish; da dan danish; fi fin finnish; no nor nob norwegian;
tr tur turkish; el gre ell greek; ar ara arabic; he heb hebrew; hi hin hindi;
ja jpn japanese; ko kor korean; zh chi zho chinese; vi vie vietnamese; id ind indonesian;
th tha thai; ro rum ron romanian; hu hun hungarian; bg bul bulgarian; fa per fas persian;
ca cat catalan; hr hrv croatian; sr srp serbian; sk slo slk slovak; sl slv slovenian
"""
LANGUAGES = {
    name: row.split()[0] for row in _TABLE.replace("\n", " ").split(";") for name in row.split()
}


def language_of(tag: str) -> str | None:
    """A language tag ("eng", "pt-BR", "fra_Latn", "English") as ISO 639-1 where it is
    known, as written where it is not, None where it is no language tag at all."""
    head = tag.strip().lower().replace("_", "-").split("-")[0]
    if head in LANGUAGES:
        return LANGUAGES[head]
    return head if len(head) in (2, 3) and head.isalpha() else None


def wanted(settings: Settings) -> list[str | None]:
    """The languages a job asks for: the spoken one first (None: detected later)."""
    spoken = settings.language
    if settings.task == "translate" or settings.english_only_model:
        spoken = "en"
    targets = [language_of(t) for t in settings.translate_to]
    return [language_of(spoken) if spoken else None, *targets]


def sidecars(path: Path, base: Path) -> list[Path]:
    """Subtitle files named for `path` next to it, or for `base` where outputs go."""
    found: dict[Path, None] = {}
    for folder, stem in ((path.parent, path.stem), (base.parent, base.name)):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            if name.startswith(stem + ".") and name.lower().endswith(SUBTITLE_EXTENSIONS):
                found[folder / name] = None
    return list(found)


def sidecar_language(sidecar: Path, stem: str) -> str | None:
    """The language a sidecar's name gives (NAME.LANG[.forced].srt), "" where it gives
    none (NAME.srt, NAME.forced.srt), None where the name is another file's (NAME.part2.srt
    belongs to NAME.part2.mp4)."""
    middle = sidecar.name.rsplit(".", 1)[0][len(stem) + 1 :]
    language = ""
    for part in middle.split(".") if middle else ():
        if part.lower() in MODIFIERS:
            continue
        if language or (found := language_of(part)) is None:
            return None
        language = found
    return language


def reason(
    path: Path,
    base: Path,
    streams: Sequence[str],
    asked: Sequence[str | None],
    theirs: Callable[[Path], bool],
) -> str | None:
    """Why `path` needs no subtitles from subq (it has one in every language `asked`), or
    None. `streams`: its subtitle streams' language tags; `theirs(file)`: False for a file
    subq wrote itself."""
    have: list[tuple[str, str]] = []  # (language or "", what it is)
    for sidecar in sidecars(path, base):
        mine = sidecar.parent == path.parent and sidecar.name.startswith(path.stem + ".")
        language = sidecar_language(sidecar, path.stem if mine else base.name)
        if language is not None and theirs(sidecar):
            have.append((language, sidecar.name))
    for tag in streams:
        language = language_of(tag) or ""
        have.append((language, f"an embedded {tag} stream" if tag else "an embedded stream"))
    translations = {lang for lang in asked[1:] if lang}
    used: list[str] = []
    for n, lang in enumerate(asked):
        if lang is None:
            match = [w for g, w in have if not g or g not in translations]
        else:
            match = [w for g, w in have if g == lang or (n == 0 and not g)]
        if not match:
            return None
        used.append(match[0])
    return "already has subtitles: " + ", ".join(dict.fromkeys(used)) + " (--skip-subtitled)"


def skip_reason(
    path: Path, base: Path, streams: Sequence[str], settings: Settings, store: Store
) -> str | None:
    """`reason` for a job's file, its own outputs (as subq wrote them) not counted."""
    files = sidecars(path, base)
    written = store.written_sums([str(f) for f in files]) if files else {}

    def theirs(sidecar: Path) -> bool:
        recorded = written.get(str(sidecar))
        return recorded is None or file_sum(sidecar) != recorded

    return reason(path, base, streams, wanted(settings), theirs)
