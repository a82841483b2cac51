"""Frame packs: the frames of one ``frames.ingested`` batch in one S3 object.

A capsule video keeps tens of thousands of ~25 KB frames. One object per
frame makes the object store's per-request cost (signing, HTTP, metadata,
the server's own CPU) the bottleneck of ingest: on the 2-core reference
machine a PUT costs ~3 ms of CPU between client and SeaweedFS, three times
the decode of the frame. A pack amortises that over a batch, the way
WebDataset shards or TFRecords do for training data.

Layout of ``videos/<video_id>/packs/<first frame index:06d>``::

    b"LPK1" | header length (4 bytes, big-endian) | JSON header | frame bytes ...

The header lists each frame's metadata with the offset and length of its
bytes after the header, so a reader gets one frame with two ranged GETs
(the header is cached) and a run of frames from one pack with one.

Browsers cannot send Range headers from an ``<img>``: ``GetFrameUrl``
copies a frame out of its pack into ``videos/<video_id>/frames/<index>``
(the frame's ``object_key``) on first use. Only frames shown to people are
ever copied.
"""

from __future__ import annotations

import bisect
import json
import struct
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass

from minio.error import S3Error

from lumenal.core.errors import NotFound
from lumenal.core.objectstore import FRAMES_BUCKET, ObjectStore
from lumenal.storage import keys
from lumenal.storage.catalog import dict_to_meta, meta_to_dict
from lumenal.v1 import common_pb2

MAGIC = b"LPK1"
CONTENT_TYPE = "application/vnd.lumenal.frame-pack"
PREFIX_LEN = 8
HEADER_GUESS = 32 * 1024  # first ranged read: header of a 64-frame pack fits
CACHED_HEADERS = 512


def object_metadata(m: common_pb2.FrameMeta) -> dict[str, str]:
    """Frame metadata on a copied-out frame object, for whoever fetches it by URL."""
    q = urllib.parse.quote
    return {"frame-id": m.frame_id, "video-id": m.video_id, "frame-index": str(m.frame_index),
            "timestamp-s": repr(m.timestamp_s), "width": str(m.width), "height": str(m.height),
            "ground-truth": q(m.ground_truth), "source": q(m.source), "phash": m.phash}


def pack_key(video_id: str, first_index: int) -> str:
    return f"{keys.video_prefix(video_id)}packs/{first_index:06d}"


def packs_prefix(video_id: str) -> str:
    return f"{keys.video_prefix(video_id)}packs/"


def build(frames: list[tuple[common_pb2.FrameMeta, bytes]]) -> bytes:
    """One pack from (metadata, encoded image) pairs in frame order."""
    entries, offset = [], 0
    for meta, data in frames:
        entries.append({**meta_to_dict(meta), "offset": offset, "length": len(data)})
        offset += len(data)
    header = json.dumps({"frames": entries}, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack(">I", len(header)), header, *(data for _, data in frames)])


@dataclass(frozen=True)
class Entry:
    meta: common_pb2.FrameMeta
    start: int  # absolute byte range in the pack object
    end: int


def parse_header(head: bytes, key: str) -> tuple[int, dict[int, Entry]] | int:
    """Entries by frame index, or the number of bytes needed when ``head`` is too short."""
    if head[:4] != MAGIC:
        raise ValueError(f"{key} is not a frame pack")
    (size,) = struct.unpack(">I", head[4:PREFIX_LEN])
    if len(head) < PREFIX_LEN + size:
        return PREFIX_LEN + size
    base = PREFIX_LEN + size
    frames = json.loads(head[PREFIX_LEN:base])["frames"]
    entries = {f["frame_index"]: Entry(dict_to_meta(f), base + f["offset"], base + f["offset"] + f["length"])
               for f in frames}
    return base, entries


class StalePack(Exception):
    """A pack changed since its header was cached (a video id was ingested again)."""


@dataclass
class Header:
    etag: str
    entries: dict[int, Entry]


class PackReader:
    """Frames out of packs: finds a frame's pack by listing the video's packs (cached, re-listed
    when a frame is past the known ones: ingests run while frames are read) and caches headers.
    Every ranged read checks the pack's ETag against the cached header's, so a pack rewritten by
    another replica is never read with a stale header."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._firsts: dict[str, list[int]] = {}
        self._headers: OrderedDict[str, Header] = OrderedDict()
        self._lock = threading.Lock()

    def forget(self, video_id: str) -> None:
        """Drop what is cached about a video (it was removed or is ingested again)."""
        with self._lock:
            self._firsts.pop(video_id, None)
            prefix = packs_prefix(video_id)
            for key in [k for k in self._headers if k.startswith(prefix)]:
                del self._headers[key]

    def read(self, video_id: str, indexes: list[int]) -> list[tuple[common_pb2.FrameMeta, bytes]]:
        """Frames in the order asked (NOT_FOUND if one is missing); frames of one pack come
        from one ranged GET."""
        try:
            return self._read(video_id, indexes)
        except StalePack:
            self.forget(video_id)
            return self._read(video_id, indexes)

    def entry(self, video_id: str, index: int) -> tuple[str, Header, Entry]:
        """The pack key, its header and the frame's entry; NOT_FOUND when no pack holds it."""
        for fresh in (False, True):
            key = self._pack_of(video_id, index, fresh)
            header = self._header(key) if key is not None else None
            if header is not None and index in header.entries:
                return key, header, header.entries[index]
        raise NotFound(f"no frame {keys.frame_id(video_id, index)!r}")

    def materialise(self, video_id: str, index: int) -> str:
        """The key of the frame's own object, copied out of its pack on first use."""
        key = keys.frame_key(video_id, index)
        if not self.store.exists(FRAMES_BUCKET, key):
            ((meta, data),) = self.read(video_id, [index])
            self.store.put_bytes(FRAMES_BUCKET, key, data, meta.content_type, object_metadata(meta))
        return key

    def _read(self, video_id: str, indexes: list[int]) -> list[tuple[common_pb2.FrameMeta, bytes]]:
        located = [self.entry(video_id, i) for i in indexes]
        spans: dict[str, tuple[Header, int, int]] = {}
        for key, header, e in located:
            _, lo, hi = spans.get(key, (header, e.start, e.end))
            spans[key] = (header, min(lo, e.start), max(hi, e.end))
        blobs = {}
        for key, (header, lo, hi) in spans.items():
            data, etag = self._range(key, lo, hi - lo)
            if etag != header.etag:
                raise StalePack(key)
            blobs[key] = (lo, data)
        out = []
        for key, _, e in located:
            lo, blob = blobs[key]
            out.append((e.meta, blob[e.start - lo: e.end - lo]))
        return out

    def _pack_of(self, video_id: str, index: int, fresh: bool) -> str | None:
        with self._lock:
            firsts = None if fresh else self._firsts.get(video_id)
        if firsts is None:
            prefix = packs_prefix(video_id)
            firsts = sorted(int(k[len(prefix):]) for k in self.store.list_keys(FRAMES_BUCKET, prefix))
            with self._lock:
                self._firsts[video_id] = firsts
        pos = bisect.bisect_right(firsts, index) - 1
        return pack_key(video_id, firsts[pos]) if pos >= 0 else None

    def _header(self, key: str) -> Header | None:
        """The pack's header (cached); None when the pack is gone."""
        with self._lock:
            if key in self._headers:
                self._headers.move_to_end(key)
                return self._headers[key]
        try:
            head, etag = self._range(key, 0, HEADER_GUESS)
            parsed = parse_header(head, key)
            if isinstance(parsed, int):
                head, etag = self._range(key, 0, parsed)
                parsed = parse_header(head, key)
        except NotFound:
            return None
        assert not isinstance(parsed, int)
        header = Header(etag, parsed[1])
        with self._lock:
            self._headers[key] = header
            while len(self._headers) > CACHED_HEADERS:
                self._headers.popitem(last=False)
        return header

    def _range(self, key: str, offset: int, length: int) -> tuple[bytes, str]:
        """Bytes [offset, offset+length) of an object (fewer at its end) and its ETag."""
        try:
            resp = self.store.client.get_object(FRAMES_BUCKET, key, offset=offset, length=length)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject", "InvalidRange"):
                raise NotFound(f"no object {key}") from None
            raise
        try:
            return resp.read(), resp.headers.get("ETag", "").strip('"')
        finally:
            resp.close()
            resp.release_conn()
