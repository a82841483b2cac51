"""The video/frame index, kept in S3 itself (one JSON manifest per video).

S3 is the only state: a manifest is written when an ingest starts
(``complete: false``) and rewritten with every frame's metadata when it
ends. Any replica rebuilds its in-memory index by listing ``manifests/``,
and reloads only manifests whose ETag changed.
"""

from __future__ import annotations

import base64
import bisect
import json
import threading
import time
from dataclasses import dataclass, field

from minio.error import S3Error

from lumenal.core.errors import InvalidArgument, NotFound
from lumenal.core.objectstore import FRAMES_BUCKET, ObjectStore
from lumenal.storage import keys
from lumenal.v1 import common_pb2, storage_pb2

MANIFESTS = "manifests/"
META_FIELDS = ("frame_id", "video_id", "frame_index", "timestamp_s", "object_key", "width", "height",
               "content_type", "ground_truth", "source", "phash")
DEFAULT_PAGE, MAX_PAGE = 100, 1000


def meta_to_dict(m: common_pb2.FrameMeta) -> dict:
    return {f: getattr(m, f) for f in META_FIELDS}


def dict_to_meta(d: dict) -> common_pb2.FrameMeta:
    return common_pb2.FrameMeta(**{f: d[f] for f in META_FIELDS if f in d})


@dataclass
class Manifest:
    """What one ingest produced; JSON in ``manifests/<video_id>.json``."""

    video_id: str
    filename: str
    kind: str
    content_sha256: str
    options: dict            # effective sample_fps, dedup_threshold, ground_truth_sha256
    complete: bool = False
    frames_decoded: int = 0
    frames_unsampled: int = 0
    frames_dropped_duplicate: int = 0
    skipped: list[str] = field(default_factory=list)
    frames: list[common_pb2.FrameMeta] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    completed_at: float = 0.0

    def to_json(self) -> bytes:
        d = {k: v for k, v in vars(self).items() if k != "frames"}
        d["frames"] = [meta_to_dict(m) for m in self.frames]
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        d = json.loads(data)
        d["frames"] = [dict_to_meta(f) for f in d.get("frames", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def info(self) -> storage_pb2.VideoInfo:
        return storage_pb2.VideoInfo(
            video_id=self.video_id, filename=self.filename, frames_stored=len(self.frames),
            frames_dropped_duplicate=self.frames_dropped_duplicate, complete=self.complete,
            kind=self.kind, content_sha256=self.content_sha256, frames_decoded=self.frames_decoded,
            frames_skipped=len(self.skipped), sample_fps=float(self.options.get("sample_fps", 0)),
            dedup_threshold=int(self.options.get("dedup_threshold", 0)))


def manifest_key(video_id: str) -> str:
    return f"{MANIFESTS}{keys.check_video_id(video_id)}.json"


def _encode_token(frame_id: str) -> str:
    return base64.urlsafe_b64encode(frame_id.encode()).decode()


def _decode_token(token: str) -> tuple[str, int]:
    try:
        return keys.parse_frame_id(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, InvalidArgument):
        raise InvalidArgument("invalid page_token: pass back next_page_token unchanged") from None


class Catalog:
    """In-memory view of the manifests in S3, refreshed by listing (cheap: one key per video)."""

    def __init__(self, store: ObjectStore, min_refresh_s: float = 1.0) -> None:
        self.store = store
        self.min_refresh_s = min_refresh_s
        self._videos: dict[str, tuple[str, Manifest]] = {}  # video_id -> (etag, manifest)
        self._lock = threading.Lock()
        self._refreshed = 0.0

    # -- S3 -----------------------------------------------------------------
    def read(self, video_id: str) -> Manifest | None:
        """The manifest as stored now (bypasses the cache; used before an ingest)."""
        try:
            return Manifest.from_json(self.store.get_bytes(FRAMES_BUCKET, manifest_key(video_id)))
        except NotFound:
            return None

    def write(self, m: Manifest) -> None:
        self.store.put_bytes(FRAMES_BUCKET, manifest_key(m.video_id), m.to_json(), "application/json")
        self.refresh(force=True)

    def delete(self, video_id: str) -> None:
        self.store.remove(FRAMES_BUCKET, manifest_key(video_id))
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Reload manifests whose ETag changed; drop deleted ones."""
        if not force and time.monotonic() - self._refreshed < self.min_refresh_s:
            return
        listed = {}
        for obj in self.store.client.list_objects(FRAMES_BUCKET, prefix=MANIFESTS):
            name = obj.object_name[len(MANIFESTS):]
            if name.endswith(".json"):
                listed[name[:-5]] = obj.etag
        with self._lock:
            current = dict(self._videos)
        fresh = {}
        for vid, etag in listed.items():
            if vid in current and current[vid][0] == etag:
                fresh[vid] = current[vid]
                continue
            try:
                fresh[vid] = (etag, Manifest.from_json(self.store.get_bytes(FRAMES_BUCKET, f"{MANIFESTS}{vid}.json")))
            except (NotFound, S3Error, ValueError, KeyError, TypeError):
                continue  # deleted meanwhile or unreadable: not part of the index
        with self._lock:
            self._videos = fresh
            self._refreshed = time.monotonic()

    # -- queries --------------------------------------------------------------
    def videos(self) -> list[Manifest]:
        self.refresh()
        with self._lock:
            return [m for _, (_, m) in sorted(self._videos.items())]

    def frames(self, video_id: str, page_size: int, token: str) -> storage_pb2.ListFramesResponse:
        """One page of complete videos' frames, ordered by frame id."""
        if page_size < 0:
            raise InvalidArgument(f"page_size must be >= 0, got {page_size}")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        self.refresh()
        with self._lock:
            if video_id:
                keys.check_video_id(video_id)
                if video_id not in self._videos:
                    raise NotFound(f"no video {video_id!r}")
                chosen = [self._videos[video_id][1]]
            else:
                chosen = [m for _, (_, m) in sorted(self._videos.items())]
        chosen = [m for m in chosen if m.complete]
        total = sum(len(m.frames) for m in chosen)
        start = _decode_token(token) if token else None
        out: list[common_pb2.FrameMeta] = []
        for m in chosen:
            if start and m.video_id < start[0]:
                continue
            frames = m.frames
            i = 0
            if start and m.video_id == start[0]:
                i = bisect.bisect_right([f.frame_index for f in frames], start[1])
            out += frames[i: i + size - len(out)]
            if len(out) >= size:
                break
        more = len(out) == size and self._has_after(chosen, out[-1])
        return storage_pb2.ListFramesResponse(frames=out, total=total,
                                              next_page_token=_encode_token(out[-1].frame_id) if more else "")

    @staticmethod
    def _has_after(chosen: list[Manifest], last: common_pb2.FrameMeta) -> bool:
        for m in chosen:
            if m.video_id > last.video_id and m.frames:
                return True
            if m.video_id == last.video_id and m.frames and m.frames[-1].frame_index > last.frame_index:
                return True
        return False
