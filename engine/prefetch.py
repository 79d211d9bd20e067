"""Decode the next job's audio while this one transcribes (one worker thread)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import media

log = logging.getLogger("subq.engine")


class AudioPrefetch:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="subq-prefetch")
        self._pending: dict[str, Future[np.ndarray]] = {}

    def start(self, path: str, keep: str) -> None:
        """Begin decoding `path`; drop any other decode except the one for `keep`."""
        if path not in self._pending:
            self._pending = {k: v for k, v in self._pending.items() if k == keep}
            self._pending[path] = self._pool.submit(media.decode_audio, Path(path))

    def take(self, path: str) -> np.ndarray:
        """The decoded audio: prefetched if it was, decoded here otherwise."""
        future = self._pending.pop(path, None)
        if future is not None:
            try:
                return future.result()
            except media.MediaError:
                raise
            except Exception:  # decode again here, where the error is reported properly
                log.warning("prefetch of %s failed; decoding it again", path, exc_info=True)
        return media.decode_audio(Path(path))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
