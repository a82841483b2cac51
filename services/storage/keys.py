"""Video ids, frame ids and the S3 keys they map to.

Every key is derived from a validated id, so no caller-supplied string can
reach outside its ``videos/<video_id>/`` prefix.
"""

from __future__ import annotations

import re

from lumenal.core.errors import InvalidArgument

VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FRAME_ID_RE = re.compile(r"^(?P<video>[^:]+):(?P<index>[0-9]{6,9})$")
PREFIX = "videos/"


def check_video_id(video_id: str) -> str:
    if not VIDEO_ID_RE.match(video_id) or ".." in video_id:
        raise InvalidArgument(
            f"invalid video_id {video_id!r}: use 1-64 letters, digits, '_', '-', '.' "
            "(starting with a letter or digit, no '..')")
    return video_id


def frame_id(video_id: str, index: int) -> str:
    return f"{video_id}:{index:06d}"


def parse_frame_id(fid: str) -> tuple[str, int]:
    """``"<video_id>:<index>"`` -> (video_id, index); INVALID_ARGUMENT otherwise."""
    m = FRAME_ID_RE.match(fid or "")
    if not m or not VIDEO_ID_RE.match(m["video"]) or ".." in m["video"]:
        raise InvalidArgument(f"invalid frame id {fid!r}: expected '<video_id>:<frame_index:06d>'")
    return m["video"], int(m["index"])


def video_prefix(video_id: str) -> str:
    return f"{PREFIX}{check_video_id(video_id)}/"


def frame_key(video_id: str, index: int) -> str:
    return f"{video_prefix(video_id)}frames/{index:06d}"


def content_video_id(sha256_hex: str) -> str:
    """The id of a video ingested without one: same content, same id (idempotent re-ingest)."""
    return f"v{sha256_hex[:16]}"
