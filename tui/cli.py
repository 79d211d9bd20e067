"""The `subq` command: `subq run`, `subq demo`, or (no subcommand) the TUI.

Only argparse and the engine's light settings module load before a subcommand is chosen
(`subq.engine` loads each name's module on first use), so `subq --help` stays fast;
torch, transformers and Textual load only on the path that needs them.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path
from typing import NoReturn

from subq.engine import (
    BACKENDS,
    CLEANUP_POLICIES,
    FORMATS,
    Settings,
    SettingsError,
    config_path,
    load_config,
)

EPILOG = """examples:
  subq run talk.mp4 lecture.mkv      write talk.srt and lecture.srt beside them
  subq run ~/videos --translate-to de,fr --format srt,vtt --output-dir subs/
  subq run talk.mp4 --format srt,json,ass --karaoke --max-line-width 32
  subq run ~/videos --skip-subtitled leave files that have subtitles already
  subq demo                          transcribe the bundled clip, offline
  subq ~/videos                      open the app with a folder queued
"""


class Parser(argparse.ArgumentParser):
    """argparse, with an error in one line (not the whole usage) and "did you mean" for a
    mistyped option (`--formt` -> `--format`)."""

    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments:" in message:
            known = [o for o in self._option_string_actions if o.startswith("--")]
            for word in message.split(":", 1)[1].split():
                near = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.6)
                if near:
                    message += f" (did you mean {near[0]}?)"
                    break
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_settings_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `subq run` and the TUI; unset ones stay None (config wins then)."""
    g = p.add_argument_group("transcription")
    g.add_argument(
        "--model",
        help="whisper model name (tiny.en, base, small, large-v3, turbo, ...), a whisper "
        "checkpoint file or a CTranslate2 model folder (default: tiny.en, bundled)",
    )
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        help="ASR backend (default: auto = faster-whisper on the CPU, whisper on CUDA)",
    )
    g.add_argument("--language", help="spoken language, e.g. en (default: detect)")
    g.add_argument(
        "--task",
        choices=("transcribe", "translate"),
        help="transcribe in the language spoken, or translate into English with Whisper "
        "itself, written as NAME.en.srt (default: transcribe)",
    )
    g.add_argument(
        "--device",
        help="auto, cpu, cuda or cuda:N; a list runs one worker per entry and several files "
        "at once (cuda:0,cuda:1; cpu,cpu: two CPU workers); all: every GPU (default: auto)",
    )
    g.add_argument("--beam-size", type=int, help="beam search width (default: greedy)")
    g.add_argument(
        "--no-condition-on-previous-text",
        dest="condition_on_previous_text",
        action="store_const",
        const=False,
        help="do not prompt each window with the previous text",
    )
    g.add_argument(
        "--no-fill-gaps",
        dest="fill_gaps",
        action="store_const",
        const=False,
        help="keep stretches of speech the decoder skipped empty (default: decode them again "
        "without the previous-text prompt; off, the transcript is the library's)",
    )
    g.add_argument(
        "--no-word-timestamps",
        dest="word_timestamps",
        action="store_const",
        const=False,
        help="no word times: cues split each segment by its characters (faster; no karaoke)",
    )
    g.add_argument(
        "--asr-batch-size",
        type=int,
        metavar="N",
        help="batched long-form mode: cut the audio at silences (VAD) into <= 30 s chunks "
        "and decode N at a time (default: 0, off; see docs/benchmarks.md)",
    )
    t = p.add_argument_group("translation")
    t.add_argument("--translate-to", help="target languages, e.g. de,fr")
    t.add_argument(
        "--translation-model",
        help="model name or folder; {src}/{tgt} are filled in "
        "(default: Helsinki-NLP/opus-mt-{src}-{tgt})",
    )
    t.add_argument("--translation-batch-size", type=int, help="segments per batch (default 32)")
    o = p.add_argument_group("output and resources")
    o.add_argument(
        "--format",
        dest="formats",
        help=f"one or more of {','.join(FORMATS)}, comma-separated (default: srt)",
    )
    add_layout_options(p)
    o.add_argument("--output-dir", help="write subtitles here instead of next to the inputs")
    o.add_argument(
        "--keep-junk",
        action="store_const",
        const=True,
        help="keep what the clean-up takes out: repeated cues (whisper looping) and lines "
        'whisper invents where nobody speaks ("Thanks for watching!"); each is listed',
    )
    o.add_argument(
        "--skip-subtitled",
        action="store_const",
        const=True,
        help="skip a file that has subtitles in each language asked for already: NAME.srt, "
        "NAME.LANG.srt/.vtt/.ass next to it or in --output-dir, or a stream inside it",
    )
    o.add_argument(
        "--force",
        action="store_const",
        const=True,
        help="redo files whose subtitles are already up to date",
    )
    o.add_argument(
        "--cleanup", choices=CLEANUP_POLICIES, help="when to free cached GPU memory (default: job)"
    )
    o.add_argument(
        "--keep-alive",
        type=float,
        help="seconds to keep models loaded after the "
        "queue drains; 0 unloads at once, -1 never (default 600)",
    )
    o.add_argument(
        "--oom-fallback",
        choices=("none", "cpu"),
        help="after a GPU out-of-memory retry fails: run the job on the CPU",
    )
    o.add_argument(
        "--worker-timeout",
        type=float,
        metavar="SECONDS",
        help="a worker call that sends nothing for this long is hung: the worker is ended "
        "and its file resumes from its last window (default 180; loads get 5x; 0: never)",
    )
    o.add_argument(
        "--cluster",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="run the workers on a Ray cluster's GPUs: auto (RAY_ADDRESS or the local head), "
        "HOST:PORT, ray://HOST:10001, or local (a throwaway Ray here); needs subq[ray]",
    )
    o.add_argument("--state", type=Path, help="queue state file (default: in the user data dir)")


def add_layout_options(p: argparse.ArgumentParser) -> None:
    """How cues are cut and laid out (engine/cue_builder.py); the defaults are Settings'."""
    d = Settings()
    g = p.add_argument_group("subtitle layout")
    g.add_argument(
        "--max-line-width",
        type=int,
        metavar="N",
        help=f"characters per line (default {d.max_line_width})",
    )
    g.add_argument(
        "--max-lines", type=int, metavar="N", help=f"lines per cue (default {d.max_lines})"
    )
    g.add_argument(
        "--max-cue-seconds",
        type=float,
        metavar="S",
        help=f"the longest a cue stays up (default {d.max_cue_seconds:g})",
    )
    g.add_argument(
        "--max-cps",
        type=float,
        metavar="N",
        help="reading speed in characters per second: a cue stays up to 0.5 s past its last "
        f"word to meet it (default {d.max_cps:g}, Netflix's limit for English children's "
        "programmes)",
    )
    g.add_argument(
        "--karaoke",
        action="store_const",
        const=True,
        help="in the ass format, highlight each word as it is spoken",
    )


SERVICE_HELP = {
    "status": "Show your engine's queue, state and memory (exit status 1: no engine runs).",
    "stop": "End your engine at its next safe point; the running file keeps its checkpoint.",
}

SETTING_KEYS = (
    "model",
    "backend",
    "language",
    "task",
    "device",
    "beam_size",
    "asr_batch_size",
    "condition_on_previous_text",
    "fill_gaps",
    "word_timestamps",
    "translate_to",
    "translation_model",
    "translation_batch_size",
    "formats",
    "max_line_width",
    "max_lines",
    "max_cue_seconds",
    "max_cps",
    "karaoke",
    "keep_junk",
    "skip_subtitled",
    "output_dir",
    "force",
    "cleanup",
    "keep_alive",
    "oom_fallback",
    "worker_timeout",
    "cluster",
)


def settings_from(args: argparse.Namespace) -> Settings:
    """Flag > config file > default."""
    overrides = {k: getattr(args, k, None) for k in SETTING_KEYS}
    settings = load_config().merged(overrides).validate()
    if settings.output_dir and Path(settings.output_dir).expanduser().is_file():
        raise SettingsError(f"--output-dir {settings.output_dir}: is a file, not a folder")
    events = getattr(args, "events", None)
    if events is not None and (events.is_dir() or not events.parent.is_dir()):
        what = "is a folder" if events.is_dir() else f"{events.parent} does not exist"
        raise SettingsError(f"--events {events}: {what}; give a file to append events to")
    from subq.engine import cluster_problem, device_problem

    if problem := device_problem(settings.device):
        raise SettingsError(problem)
    if problem := cluster_problem(settings.cluster):
        raise SettingsError(problem)
    return settings


def build_run_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="subq run",
        description="Transcribe (and translate) a batch of media files headless, then exit.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or globs")
    add_settings_options(p)
    p.add_argument(
        "--events", type=Path, metavar="FILE", help="append engine events as JSON lines to FILE"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and failures")
    p.add_argument(
        "--detach",
        action="store_true",
        help="hand the files to your engine (started if none runs) and return at once",
    )
    return p


def build_main_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="subq",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        description="Subtitles for batches of videos on shared GPU servers. Without a\n"
        "subcommand, opens the app with PATHS queued.\n\nsubcommands:\n"
        "  run PATHS...  headless batch (subq run --help); --detach: queue to the engine\n"
        "  status        the engine's queue (--json for scripts)\n"
        "  stop          end the engine at its next safe point (the queue is kept)\n"
        "  demo          transcribe the bundled sample clip\n\n"
        "The app attaches to your engine, a background process per state file that\n"
        "goes on when the terminal or SSH session ends; --here runs the engine inside\n"
        f"the app.\n\nsettings file: {config_path()}",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or globs to queue")
    p.add_argument(
        "--here",
        action="store_true",
        help="run the engine inside this app (it stops when the app ends) instead of "
        "attaching to your background engine",
    )
    add_settings_options(p)
    return p


def bare_cluster(argv: list[str]) -> list[str]:
    """`--cluster talk.mp4`: a bare --cluster (auto) followed by the paths, which argparse
    would take for the address and then ask for a PATH. A word that names a file or folder,
    or is a glob, is a path, unless it reads as an address: auto, local, ray://..., an
    option, or HOST:PORT ([::1]:6379 too)."""
    import glob
    import os
    import re

    for i, word in enumerate(argv[:-1]):
        after = argv[i + 1]
        address = after in ("auto", "local") or after.startswith(("ray://", "-"))
        address = address or bool(re.fullmatch(r"\[?[\w.:-]+\]?:\d+", after))
        if word == "--cluster" and not address and (os.path.exists(after) or glob.has_magic(after)):
            return [*argv[: i + 1], "auto", *argv[i + 1 :]]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = bare_cluster(list(sys.argv[1:] if argv is None else argv))
    try:
        if argv[:1] == ["run"]:
            args = build_run_parser().parse_args(argv[1:])
            if args.detach:
                from .attached import run_detached

                return run_detached(args.paths, settings_from(args), args.state, args.quiet)
            from subq.engine import run_batch

            return run_batch(
                args.paths,
                settings_from(args),
                state=args.state,
                events=args.events,
                quiet=args.quiet,
            )
        if argv[:1] in (["status"], ["stop"]):
            p = Parser(prog=f"subq {argv[0]}", description=SERVICE_HELP[argv[0]])
            p.add_argument("--state", type=Path, help="queue state file (default: user data dir)")
            if argv[0] == "status":
                p.add_argument("--json", action="store_true", help="print JSON for scripts")
            args = p.parse_args(argv[1:])
            from .attached import show_status, stop_service

            if argv[0] == "status":
                return show_status(args.state, args.json)
            return stop_service(args.state)
        if argv[:1] == ["demo"]:
            p = Parser(prog="subq demo", description="Transcribe the bundled sample clip offline.")
            add_settings_options(p)
            args = p.parse_args(argv[1:])
            from subq.engine import run_demo

            return run_demo(settings_from(args))
        args = build_main_parser().parse_args(argv)
        settings = settings_from(args)
        if args.here:
            from subq.tui.app import run_app

            return run_app(args.paths, settings, state=args.state)
        from .attached import run_attached

        return run_attached(args.paths, settings, args.state)
    except SettingsError as exc:
        print(f"subq: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `subq status | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
        return 141  # as a shell reports a writer ended by SIGPIPE
    except _state_errors() as exc:
        print(f"subq: {exc}", file=sys.stderr)
        return 2


def _state_errors() -> tuple[type[Exception], ...]:
    from subq.engine import StateError

    return (StateError,)


if __name__ == "__main__":
    sys.exit(main())
