"""Long audio made on the fly from a committed clip, for tests and benchmarks of length.

Minutes of audio are needed to test what depends on length (memory, resume, progress), but
committing them would bloat the repository; remuxing a clip's packets costs a tenth of a
second for ten minutes and needs no encoder.
"""

from __future__ import annotations

from pathlib import Path

import av


def loop_clip(clip: Path, target: Path, minutes: float) -> float:
    """`clip`'s packets repeated into an mp3 of at least `minutes` (remuxed, not encoded,
    so a 10-minute file takes a tenth of a second); its length in seconds."""
    with av.open(str(clip)) as source:
        template = source.streams.audio[0]
        packets = [p for p in source.demux(template) if p.size]
        offsets = [p.pts - packets[0].pts for p in packets]
        period = sum(p.duration for p in packets)
        with av.open(str(target), "w", format="mp3") as out:
            stream = out.add_stream_from_template(template)
            start = 0
            while start * template.time_base < minutes * 60:
                for packet, offset in zip(packets, offsets, strict=True):
                    packet.stream = stream
                    packet.pts = packet.dts = start + offset
                    out.mux(packet)
                start += period
        return float(start * template.time_base)
