"""Decoded model inputs kept between re-scores.

Every ``models.published`` re-scores the whole pool: each frame is fetched
again from storage (an S3 ranged read behind a gRPC stream) and decoded, for
the same pixels as last time. This cache keeps the decoded uint8 input
(``size x size x channels``: 12 KB at 64x64x3) of the first frames seen, up to
a byte budget, so a re-score skips storage and decoding for those frames
(measured: fetch + decode cost ~20 ms of CPU per 64-frame batch across the
inference service, storage and S3, beside ~75 ms for the model itself).

Admission, not LRU: a re-score walks the whole pool in one order, and an LRU
smaller than the pool never hits (every frame is evicted before its turn comes
round again). Keeping the first frames that fit gives hits on that share of
every later re-score. Entries of frames labeled since stay until a restart;
the budget bounds them.
"""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import Counter, Gauge

LOOKUPS = Counter("lumenal_inference_frame_cache_lookups_total", "decoded-frame cache lookups", ["result"])
BYTES = Gauge("lumenal_inference_frame_cache_bytes", "bytes held by the decoded-frame cache")


class FrameCache:
    """Thread-safe ``frame_id -> uint8 [size, size, channels]``, admission up to ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.bytes = 0
        self._items: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, frame_id: str, size: int, channels: int) -> np.ndarray | None:
        """The cached input at this size, or None (not cached, or cached for another model size)."""
        img = self._items.get(frame_id)
        hit = img is not None and img.shape == (size, size, channels)
        LOOKUPS.labels("hit" if hit else "miss").inc()
        return img if hit else None

    def put(self, frame_id: str, img: np.ndarray) -> bool:
        """Keep a read-only copy of ``img`` if the budget allows; True when cached at that size."""
        with self._lock:
            old = self._items.get(frame_id)
            if old is not None and old.shape == img.shape:
                return True
            freed = old.nbytes if old is not None else 0
            if self.bytes - freed + img.nbytes > self.max_bytes:
                return False
            img = img.copy()
            img.setflags(write=False)
            self._items[frame_id] = img
            self.bytes += img.nbytes - freed
            BYTES.set(self.bytes)
            return True
