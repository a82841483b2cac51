"""Stable train/validation split by a hash of the frame id.

A frame's side never changes, so the validation set only grows as labels
arrive, a frame once used for validation never leaks into training, and the
serving model and a candidate are compared on the same frames.
"""

from __future__ import annotations

import hashlib

_BUCKETS = 10_000


def is_validation(frame_id: str, val_fraction: float) -> bool:
    digest = hashlib.sha256(frame_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS < round(val_fraction * _BUCKETS)


def split(frame_ids: list[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """``(train, validation)`` frame ids, each in input order."""
    train, val = [], []
    for fid in frame_ids:
        (val if is_validation(fid, val_fraction) else train).append(fid)
    return train, val
