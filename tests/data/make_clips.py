"""Make the small committed media set used by the tests and by the demo.

Run from anywhere:

    python tests/data/make_clips.py            # every clip
    python tests/data/make_clips.py --only story  # only story.mp3 (+ its reference)
    python tests/data/make_clips.py --only languages  # only french.mp3 and spanish.mp3

Needs the ``espeak-ng`` program (speech synthesis) and PyAV (``import av``) for all
encoding and muxing; the ``ffmpeg`` program is not used.  The outputs are committed,
so the tests never need espeak-ng or ffmpeg themselves.

Writes, relative to the repository root:

* ``tests/data/talk.mp4``      tiny H.264 (or MPEG-4) video + mono AAC audio
* ``tests/data/lecture.mkv``   tiny MPEG-4 video + mono Opus audio (Vorbis/AAC fallback)
* ``tests/data/podcast.mp3``   mono MP3, 22.05 kHz
* ``tests/data/long.mp3``      about 70 s of continuous speech (spans >= 3 whisper windows)
* ``tests/data/story.mp3``     about 3 minutes of distinct narrative sentences in eight
                               paragraphs with short pauses, 16 kHz mono MP3 at 16 kbit/s
* ``tests/data/noaudio.mp4``   a couple of seconds of video with no audio stream
* ``tests/data/french.mp3``, ``tests/data/spanish.mp3``  four sentences each, spoken by
                               espeak-ng's fr and es voices (the English of the same
                               sentences is in references.json as ``NAME:en``)
* ``tests/data/references.json``  {file name: exact text spoken} for every speech clip
* ``engine/data/demo.mp3`` and ``engine/data/demo.txt``  the demo clip shipped in the package

Output is deterministic for a given espeak-ng / FFmpeg build: fixed voice and speed,
synthetic video frames computed from the frame index, explicit timestamps, single-threaded
encoders and FFmpeg's ``bitexact`` flags (no encoder-version tags, no random Matroska UIDs).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ENGINE_DATA = ROOT / "engine" / "data"

VOICE = "en-us"
SPEED_WPM = 130

# Plain everyday sentences: no digits, no names, no words with several common spellings.
TALK = (
    "The weather was warm and sunny, so we walked to the park after lunch. "
    "The children played near the pond while we rested."
)
LECTURE = (
    "Today we will learn how green plants make their own food from sunlight. "
    "It all happens inside their leaves."
)
PODCAST = (
    "Welcome back to our show. "
    "This week we are talking about simple ways to cook a healthy dinner at home."
)
LONG = (
    "Every morning I wake up early and make a cup of coffee. "
    "While the water is heating, I open the window and let in some fresh air. "
    "Next, I sit at the kitchen table and check the weather for the day. "
    "After breakfast, I take my little dog for a long walk around the neighborhood. "
    "We usually stop at the small park near the river, where my dog likes to run on the grass. "
    "When we get back home, I wash the dishes and clean the kitchen. "
    "Most days I work from home, so I start my computer and check my email. "
    "I try to do the hard work before lunch, because I feel more focused in the morning. "
    "In the afternoon, I often go to the market to buy fresh fruit and vegetables. "
    "On weekends, we like to visit friends or ride our bikes along the quiet roads by the lake. "
    "In the evening, I cook dinner and talk with my family about our day. "
    "At night, I read for a while before I go to sleep."
)
DEMO = "This is a short demo. It listens to the speech in a video and writes it down as subtitles."

# About three minutes of distinct narrative sentences, one tuple item per paragraph; the
# paragraphs are spoken separately and joined with a short silence, so voice activity
# detection finds natural places to cut.  No sentence repeats.
STORY = (
    (
        "Last spring my sister and I decided to spend a week in a small house by the sea. "
        "We packed our bags and left early the next morning. "
        "The road wound through green hills and quiet farms. "
        "We stopped once for bread and cheese. "
        "By the middle of the afternoon we could smell the salt in the air."
    ),
    (
        "The house was old, but it was clean and full of light. "
        "It had a wooden porch that faced the water. "
        "In the kitchen we found a note from the owner with a map of the town. "
        "She had marked the safest beach for swimming. "
        "We opened every window and let the cool wind blow through the rooms."
    ),
    (
        "On the first evening we walked along the shore until the sun went down. "
        "The sand was still warm under our feet. "
        "Small birds ran in and out of the waves, looking for food. "
        "My sister collected shells in her pocket. "
        "When it grew dark, we went back and cooked a simple soup for dinner."
    ),
    (
        "The next day the sky was covered with heavy clouds. "
        "We stayed inside and read books by the fire. "
        "Around noon the rain began to fall, softly at first and then very hard. "
        "The wind shook the doors, and the sea turned dark and rough. "
        "We made hot tea and watched the storm from the window for hours."
    ),
    (
        "By the third morning the weather had cleared. "
        "We rented two bicycles and rode to the village. "
        "The streets were narrow and lined with bright painted doors. "
        "An old man was selling fresh bread from a cart near the harbor. "
        "We bought a loaf and ate it on a bench while the boats came in."
    ),
    (
        "In the afternoon we climbed a steep path to the top of a cliff. "
        "From there we could see the whole coast stretching far to the north. "
        "A lighthouse stood alone on a rock in the water. "
        "My sister said she had always wanted to live in a place like that. "
        "I told her she would miss the noise of the city within a week."
    ),
    (
        "On our last full day we went fishing with a man from the village. "
        "He showed us how to tie the hooks and where the fish liked to hide. "
        "I caught nothing at all, but my sister pulled in three large fish. "
        "She was so proud that she talked about it all the way home. "
        "That night we cooked them and ate outside under the stars."
    ),
    (
        "When it was time to leave, neither of us wanted to go. "
        "We cleaned the house and left a note on the table. "
        "The drive home felt much shorter than the drive there. "
        "We promised each other that we would come back next summer. "
        "I still keep one of her shells on my desk."
    ),
)
STORY_TEXT = " ".join(STORY)
STORY_PAUSE_SECONDS = 1.2

# Speech in other languages (base detects espeak-ng's French and Spanish; it took its German
# for Latin or Yiddish): name -> (espeak-ng voice, sentences, the same in English).
LANGUAGES = {
    "french.mp3": (
        "fr",
        (
            "Bonjour à tous.",
            "Aujourd'hui nous parlons de la cuisine française.",
            "Le pain frais est très important pour le petit déjeuner.",
            "Merci beaucoup et à bientôt.",
        ),
        (
            "Hello everyone.",
            "Today we are talking about French cooking.",
            "Fresh bread is very important for breakfast.",
            "Thank you very much and see you soon.",
        ),
    ),
    "spanish.mp3": (
        "es",
        (
            "Buenos días a todos.",
            "Hoy vamos a hablar de la historia de Madrid.",
            "La ciudad tiene muchos museos y parques.",
            "Muchas gracias y hasta luego.",
        ),
        (
            "Good morning everyone.",
            "Today we are going to talk about the history of Madrid.",
            "The city has many museums and parks.",
            "Thank you very much and see you later.",
        ),
    ),
}

# Tiny synthetic video stream.
VIDEO_SIZE = 64
VIDEO_FPS = 2


def synthesize(text: str, wav_path: Path, voice: str = VOICE) -> None:
    """Speak ``text`` into a 22.05 kHz mono 16-bit wav with espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit("make_clips.py needs the espeak-ng program (apt-get install espeak-ng)")
    subprocess.run(
        [exe, "-v", voice, "-s", str(SPEED_WPM), "-w", str(wav_path), text],
        check=True,
    )


def read_wav(wav_path: Path) -> tuple[np.ndarray, int]:
    """Decode a wav with PyAV into (int16 mono samples, sample rate)."""
    chunks = []
    with av.open(str(wav_path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.int16), rate


def pad(samples: np.ndarray, rate: int, seconds: float = 0.25) -> np.ndarray:
    silence = np.zeros(int(rate * seconds), dtype=np.int16)
    return np.concatenate([silence, samples, silence])


def pick_codec(*names: str) -> str:
    for name in names:
        try:
            av.codec.Codec(name, "w")
        except Exception:
            continue
        return name
    raise RuntimeError(f"PyAV has none of the encoders {names}")


def video_frame(index: int) -> av.VideoFrame:
    """A deterministic little picture: a gradient whose colour drifts with the index."""
    y, x = np.mgrid[0:VIDEO_SIZE, 0:VIDEO_SIZE]
    img = np.empty((VIDEO_SIZE, VIDEO_SIZE, 3), dtype=np.uint8)
    img[..., 0] = (x * 4 + index * 16) % 256
    img[..., 1] = (y * 4) % 256
    img[..., 2] = (128 + index * 24) % 256
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    frame.pts = index
    frame.time_base = Fraction(1, VIDEO_FPS)
    return frame


def encode(
    out_path: Path,
    *,
    samples: np.ndarray | None,
    in_rate: int,
    duration: float,
    audio_codec: str | None = None,
    audio_rate: int = 16000,
    audio_bitrate: int = 32000,
    video_codec: str | None = None,
    container_format: str | None = None,
) -> None:
    """Mux an optional video stream and an optional mono audio stream into ``out_path``."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(
        str(out_path),
        "w",
        format=container_format,
        container_options={"fflags": "+bitexact"},
    )
    vstream = astream = None
    if video_codec is not None:
        vstream = container.add_stream(video_codec, rate=VIDEO_FPS)
        vstream.width = VIDEO_SIZE
        vstream.height = VIDEO_SIZE
        vstream.pix_fmt = "yuv420p"
        vstream.time_base = Fraction(1, VIDEO_FPS)
        vstream.codec_context.thread_count = 1
        vstream.codec_context.bit_rate = 20000
        vstream.codec_context.gop_size = 4 * VIDEO_FPS
        vstream.codec_context.flags |= av.codec.context.Flags.bitexact
        if video_codec == "libx264":
            vstream.codec_context.options = {"preset": "veryfast", "crf": "40"}
    if audio_codec is not None:
        assert samples is not None
        astream = container.add_stream(audio_codec, rate=audio_rate)
        astream.layout = "mono"
        astream.bit_rate = audio_bitrate
        astream.time_base = Fraction(1, audio_rate)
        astream.codec_context.thread_count = 1
        astream.codec_context.flags |= av.codec.context.Flags.bitexact
        if audio_codec == "vorbis":
            astream.codec_context.options = {"strict": "experimental"}

    # Video packets first (they are tiny), then audio; the muxer interleaves by timestamp.
    if vstream is not None:
        for i in range(max(1, math.ceil(duration * VIDEO_FPS))):
            container.mux(vstream.encode(video_frame(i)))
        container.mux(vstream.encode(None))

    if astream is not None:
        ctx = astream.codec_context
        in_frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        in_frame.sample_rate = in_rate
        in_frame.pts = 0
        in_frame.time_base = Fraction(1, in_rate)
        resampler = av.AudioResampler(
            format=ctx.format.name,
            layout="mono",
            rate=audio_rate,
            frame_size=ctx.frame_size or 1024,
        )
        pts = 0
        for frame in [*resampler.resample(in_frame), *resampler.resample(None)]:
            frame.pts = pts
            frame.time_base = Fraction(1, audio_rate)
            pts += frame.samples
            container.mux(astream.encode(frame))
        container.mux(astream.encode(None))
    container.close()


def make_story(mp3: str, tmp: Path) -> Path:
    """Speak each story paragraph separately and join them with silence into story.mp3.

    16 kbit/s (about 360 KB): at 8 kbit/s tiny.en's WER rose from 0.12 to 0.28 (0.09 on the
    uncompressed wav), so the smaller file was not worth it.
    """
    return paragraphs_mp3(STORY, STORY_PAUSE_SECONDS, mp3, tmp, HERE / "story.mp3")


def paragraphs_mp3(
    paragraphs: Sequence[str], pause: float, mp3: str, tmp: Path, out_path: Path, voice=VOICE
) -> Path:
    """Each paragraph spoken on its own, joined by `pause` seconds of silence, as a 16 kHz
    mono MP3 at 16 kbit/s (so voice activity detection finds natural places to cut)."""
    parts = []
    rate = 0
    for i, paragraph in enumerate(paragraphs):
        wav = tmp / f"{out_path.stem}-{i}.wav"
        synthesize(paragraph, wav, voice)
        samples, rate = read_wav(wav)
        parts.append(samples)
        parts.append(np.zeros(int(rate * pause), dtype=np.int16))
    samples = pad(np.concatenate(parts[:-1]), rate)
    encode(
        out_path,
        samples=samples,
        in_rate=rate,
        duration=len(samples) / rate,
        audio_codec=mp3,
        audio_rate=16000,
        audio_bitrate=16000,
    )
    return out_path


def make_languages(mp3: str) -> list[Path]:
    """french.mp3 and spanish.mp3: sentences said one by one, and their references (the
    words spoken, and the English of them for Whisper's translate task)."""
    outputs = []
    with tempfile.TemporaryDirectory(prefix="subq-clips-") as tmp:
        for name, (voice, sentences, english) in LANGUAGES.items():
            out = paragraphs_mp3(sentences, 0.6, mp3, Path(tmp), HERE / name, voice)
            update_reference(name, " ".join(sentences))
            update_reference(f"{name}:en", " ".join(english))
            outputs.append(out)
    return [*outputs, HERE / "references.json"]


def update_reference(name: str, text: str) -> None:
    """Set one clip's reference text, keeping the others as committed."""
    path = HERE / "references.json"
    references = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    references[name] = text
    path.write_text(json.dumps(references, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        choices=["story", "languages"],
        help="make only this clip; leave the other committed files byte for byte as they are",
    )
    args = parser.parse_args()
    mp3 = pick_codec("libmp3lame", "mp3")
    if args.only == "story":
        with tempfile.TemporaryDirectory(prefix="subq-clips-") as tmp:
            out_path = make_story(mp3, Path(tmp))
        update_reference("story.mp3", STORY_TEXT)
        report([out_path, HERE / "references.json"])
        return
    if args.only == "languages":
        report(make_languages(mp3))
        return

    h264 = pick_codec("libx264", "mpeg4")
    mkv_audio = pick_codec("libopus", "vorbis", "aac")

    speech = {
        # name: (text, output path, encode kwargs)
        "talk.mp4": (
            TALK,
            HERE / "talk.mp4",
            dict(audio_codec="aac", audio_rate=16000, audio_bitrate=32000, video_codec=h264),
        ),
        "lecture.mkv": (
            LECTURE,
            HERE / "lecture.mkv",
            dict(
                audio_codec=mkv_audio,
                audio_rate=16000 if mkv_audio != "vorbis" else 22050,
                audio_bitrate=24000,
                video_codec="mpeg4",
                container_format="matroska",
            ),
        ),
        "podcast.mp3": (
            PODCAST,
            HERE / "podcast.mp3",
            dict(audio_codec=mp3, audio_rate=22050, audio_bitrate=32000),
        ),
        "long.mp3": (
            LONG,
            HERE / "long.mp3",
            dict(audio_codec=mp3, audio_rate=16000, audio_bitrate=24000),
        ),
        "demo.mp3": (
            DEMO,
            ENGINE_DATA / "demo.mp3",
            dict(audio_codec=mp3, audio_rate=22050, audio_bitrate=32000),
        ),
    }

    with tempfile.TemporaryDirectory(prefix="subq-clips-") as tmp:
        for name, (text, out_path, kwargs) in speech.items():
            wav = Path(tmp) / (Path(name).stem + ".wav")
            synthesize(text, wav)
            samples, rate = read_wav(wav)
            samples = pad(samples, rate)
            encode(out_path, samples=samples, in_rate=rate, duration=len(samples) / rate, **kwargs)
        story_path = make_story(mp3, Path(tmp))

    encode(HERE / "noaudio.mp4", samples=None, in_rate=0, duration=2.0, video_codec=h264)

    references = {name: text for name, (text, _, _) in speech.items() if name != "demo.mp3"}
    references["story.mp3"] = STORY_TEXT
    (HERE / "references.json").write_text(json.dumps(references, indent=2) + "\n")
    (ENGINE_DATA / "demo.txt").write_text(DEMO + "\n")

    outputs = [path for _, path, _ in speech.values()] + [
        story_path,
        HERE / "noaudio.mp4",
        HERE / "references.json",
        ENGINE_DATA / "demo.txt",
    ]
    report(outputs)


def report(outputs: list[Path]) -> None:
    """Print each output's size, duration and streams."""
    for path in outputs:
        line = f"{path.relative_to(ROOT)!s:28} {path.stat().st_size / 1024:7.1f} KB"
        if path.suffix in {".mp3", ".mp4", ".mkv"}:
            with av.open(str(path)) as c:
                streams = ", ".join(
                    f"{s.type}:{s.codec_context.name}"
                    + (f"@{s.rate}Hz" if s.type == "audio" else f"@{s.width}x{s.height}")
                    for s in c.streams
                )
                dur = (c.duration or 0) / av.time_base
            line += f"  {dur:5.1f} s  {streams}"
        print(line)


if __name__ == "__main__":
    main()
