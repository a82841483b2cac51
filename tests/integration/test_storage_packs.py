"""Frame packs on a real SeaweedFS: layout, ranged reads, caches that never serve stale bytes."""

from __future__ import annotations

import pytest

from lumenal.core.errors import NotFound
from lumenal.core.objectstore import FRAMES_BUCKET
from lumenal.storage import keys, packs
from lumenal.v1 import common_pb2


def _frames(video_id: str, indexes: list[int], tag: bytes = b"") -> list[tuple[common_pb2.FrameMeta, bytes]]:
    return [(common_pb2.FrameMeta(frame_id=keys.frame_id(video_id, i), video_id=video_id, frame_index=i,
                                  content_type="image/jpeg", object_key=keys.frame_key(video_id, i),
                                  ground_truth="bubbles" if i % 2 else ""),
             tag + f"frame-{i}-".encode() * (i + 1)) for i in indexes]


def _put(store, video_id: str, frames) -> None:  # noqa: ANN001
    first = frames[0][0].frame_index
    store.put_bytes(FRAMES_BUCKET, packs.pack_key(video_id, first), packs.build(frames), packs.CONTENT_TYPE)


def test_header_round_trip_and_short_reads():
    frames = _frames("v", [3, 5, 9])
    blob = packs.build(frames)
    need = packs.parse_header(blob[:10], "k")
    assert isinstance(need, int) and need > 10          # asks for the rest of the header
    base, entries = packs.parse_header(blob, "k")
    assert sorted(entries) == [3, 5, 9]
    for meta, data in frames:
        e = entries[meta.frame_index]
        assert e.meta == meta and blob[e.start:e.end] == data
    with pytest.raises(ValueError, match="not a frame pack"):
        packs.parse_header(b"\xff\xd8\xff\xe0" + blob[4:], "k")


def test_reader_finds_frames_across_packs_and_new_packs_mid_ingest(object_store, unique):
    vid = f"pk-{unique}"
    reader = packs.PackReader(object_store)
    _put(object_store, vid, _frames(vid, [0, 2, 3]))
    _put(object_store, vid, _frames(vid, [4, 7]))
    got = reader.read(vid, [7, 0, 3, 4])
    assert [m.frame_index for m, _ in got] == [7, 0, 3, 4]
    assert [d for _, d in got] == [d for _, d in (_frames(vid, [7]) + _frames(vid, [0, 3, 4]))]
    with pytest.raises(NotFound):          # index 1 was dropped as a duplicate: in no pack
        reader.read(vid, [1])
    _put(object_store, vid, _frames(vid, [8, 9]))  # the ingest goes on; the cached listing is old
    assert reader.read(vid, [9])[0][1] == _frames(vid, [9])[0][1]
    with pytest.raises(NotFound):
        reader.read(vid, [50])
    with pytest.raises(NotFound):
        reader.read(f"none-{unique}", [0])


def test_a_rewritten_pack_is_never_read_with_a_stale_header(object_store, unique):
    """Another replica re-ingested the video id: the ETag check drops the cached header."""
    vid = f"pk-{unique}"
    reader = packs.PackReader(object_store)
    _put(object_store, vid, _frames(vid, [0, 1, 2]))
    assert reader.read(vid, [1])[0][1] == _frames(vid, [1])[0][1]
    _put(object_store, vid, _frames(vid, [0, 1, 2], tag=b"new-content-with-other-offsets "))
    assert reader.read(vid, [1])[0][1] == _frames(vid, [1], tag=b"new-content-with-other-offsets ")[0][1]


def test_large_headers_and_materialised_frames(object_store, unique):
    vid = f"pk-{unique}"
    indexes = list(range(0, 1200, 2))      # a 600-frame pack: its header is past the first read
    _put(object_store, vid, _frames(vid, indexes))
    reader = packs.PackReader(object_store)
    meta, data = reader.read(vid, [1198])[0]
    assert meta.frame_index == 1198 and data == _frames(vid, [1198])[0][1]
    key = reader.materialise(vid, 1198)
    assert key == keys.frame_key(vid, 1198) and object_store.get_bytes(FRAMES_BUCKET, key) == data
    assert reader.materialise(vid, 1198) == key    # second time: no copy
    with pytest.raises(NotFound):
        reader.materialise(vid, 1199)
