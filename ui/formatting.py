"""Small pure display helpers shared by pages (kept out of page scripts so tests can import them)."""

from __future__ import annotations

from lumenal.v1 import storage_pb2


def progress_fraction(p: storage_pb2.IngestProgress, size: int) -> tuple[float, str]:
    """Where the ingest is, as a bar value and a caption."""
    if p.done:
        return 1.0, f"Done: {p.frames_stored} frames stored, {p.frames_dropped_duplicate} near-duplicates dropped"
    if p.frames_decoded == 0:
        got = p.bytes_received
        return (min(got / size, 1.0) * 0.5 if size else 0.0), f"Uploading: {got / 1e6:.1f} / {size / 1e6:.1f} MB"
    total = p.total_frames_estimate
    frac = 0.5 + 0.5 * min(p.frames_decoded / total, 1.0) if total else 0.5
    return frac, f"Decoding: {p.frames_decoded} frames read, {p.frames_stored} stored"
