"""The storage service in-process (``grpc_server.start``) against real SeaweedFS and tansu."""

from __future__ import annotations

import io
import threading
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from test_storage_support import (
    SECRET,
    collect,
    consumer,
    ingest_path,
    keys_and_etags,
    md,
    need_vtest,
    stub,
    upload,
)

from lumenal.core import auth
from lumenal.core.config import from_env
from lumenal.core.objectstore import ObjectStore
from lumenal.demo import synthetic
from lumenal.storage import media
from lumenal.storage import server as storage_server
from lumenal.storage.catalog import manifest_key
from lumenal.storage.server import StorageServicer
from lumenal.storage.settings import StorageSettings
from lumenal.v1 import common_pb2, events_pb2, storage_pb2

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ingest-root")


@pytest.fixture(scope="module")
def settings(module_infra, data_dir) -> StorageSettings:
    base = vars(module_infra.settings())
    roots = f"{data_dir}:{Path('/usr/share/doc/opencv-doc')}"
    return from_env(StorageSettings, environ={}, **{**base, "auth_secret": SECRET, "ingest_roots": roots,
                                                   "spool_dir": str(data_dir)})


def _serve(settings: StorageSettings, store: ObjectStore | None = None, **overrides: object):
    from dataclasses import replace
    server, servicer = storage_server.serve(replace(settings, **overrides), port=0, metrics_port=-1, store=store)
    return server, servicer


@pytest.fixture(scope="module")
def storage(settings):
    server, _ = _serve(settings)
    ch, s = stub(server.port)
    yield s
    ch.close()
    server.stop()


@pytest.fixture(scope="module")
def demo(data_dir) -> synthetic.DemoVideo:
    return synthetic.generate(data_dir / "demo", frames=300, seed=5, size=64, fps=5)


def _decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_vtest_by_path_stores_samples_dedups_and_publishes(storage, module_infra, settings, unique):
    video = need_vtest()
    vid = f"vtest-{unique}"
    progress = ingest_path(storage, video, video_id=vid)
    last = progress[-1]
    assert last.done and last.video_id == vid and not any(p.done for p in progress[:-1])
    assert last.frames_decoded == 795 and last.total_frames_estimate == 795
    # 10 fps source sampled at the default 5 fps; the static camera gives many near-duplicates.
    assert last.frames_unsampled == 397
    assert last.frames_stored + last.frames_dropped_duplicate == 398
    assert 50 < last.frames_stored < 398 and last.frames_dropped_duplicate > 0
    listed = storage.ListFrames(storage_pb2.ListFramesRequest(video_id=vid, page=common_pb2.Page(page_size=1000)),
                                metadata=md(auth.ANNOTATOR))
    assert listed.total == last.frames_stored == len(listed.frames)
    hashes = [int(f.phash, 16) for f in listed.frames]
    assert all(media.hamming(a, b) > settings.dedup_threshold for a, b in zip(hashes, hashes[1:], strict=False))

    events = collect(module_infra.kafka_bootstrap, vid, last.frames_stored)
    assert len(events) == last.batches_published == -(-last.frames_stored // settings.batch_size)
    assert sum(e.last_batch for e in events) == 1
    assert sorted(f.frame_id for e in events for f in e.frames) == [f.frame_id for f in listed.frames]

    first = listed.frames[0]
    frame = storage.GetFrame(storage_pb2.GetFrameRequest(frame_id=first.frame_id), metadata=md(auth.ANNOTATOR))
    assert frame.meta == first
    assert _decode(frame.image).size == (768, 576) and frame.meta.content_type == "image/jpeg"
    ids = [f.frame_id for f in listed.frames[:5]]
    streamed = list(storage.GetFrames(storage_pb2.GetFramesRequest(frame_ids=ids), metadata=md()))
    assert [f.meta.frame_id for f in streamed] == ids
    url = storage.GetFrameUrl(storage_pb2.GetFrameRequest(frame_id=first.frame_id, url_ttl_s=60), metadata=md())
    with urllib.request.urlopen(url.url) as r:
        assert r.read() == frame.image
    assert url.expires_in_s == 60

    info = {v.video_id: v for v in storage.ListVideos(storage_pb2.ListVideosRequest(), metadata=md()).videos}[vid]
    assert info.complete and info.frames_stored == last.frames_stored and info.kind == "video"
    assert info.frames_decoded == 795 and info.sample_fps == settings.sample_fps


def test_paging_walks_every_frame_once(storage, demo, unique):
    vid = f"page-{unique}"
    last = ingest_path(storage, demo.video, video_id=vid)[-1]
    seen, token = [], ""
    while True:
        page = storage.ListFrames(storage_pb2.ListFramesRequest(
            video_id=vid, page=common_pb2.Page(page_size=7, page_token=token)), metadata=md())
        seen += [f.frame_id for f in page.frames]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == last.frames_stored
    everything = storage.ListFrames(storage_pb2.ListFramesRequest(page=common_pb2.Page(page_size=1000)),
                                    metadata=md())
    assert set(seen) <= {f.frame_id for f in everything.frames}


def test_upload_and_path_of_the_same_content_are_one_idempotent_video(storage, object_store, settings):
    data = need_vtest().read_bytes()
    first = upload(storage, data, filename="vtest.avi")
    assert first[0].bytes_received == len(data) and first[-1].done
    vid = first[-1].video_id
    assert vid.startswith("v") and first[-1].frames_stored > 0
    before = keys_and_etags(object_store, f"videos/{vid}/")
    manifest_etag = keys_and_etags(object_store, manifest_key(vid))
    again = ingest_path(storage, need_vtest())
    assert again[-1].video_id == vid and again[-1].already_ingested and again[-1].done
    assert again[-1].frames_stored == first[-1].frames_stored and again[-1].batches_published == 0
    assert upload(storage, data)[-1].already_ingested
    assert keys_and_etags(object_store, f"videos/{vid}/") == before
    assert keys_and_etags(object_store, manifest_key(vid)) == manifest_etag
    # Same content, other options: refused rather than silently mixing two samplings.
    with pytest.raises(grpc.RpcError) as e:
        ingest_path(storage, need_vtest(), sample_fps=2)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS and "other options" in e.value.details()


class GatedStore(ObjectStore):
    """Real S3, but frame-pack uploads after the first ``open_for`` wait for ``gate``."""

    def __init__(self, client, open_for: int) -> None:  # noqa: ANN001
        super().__init__(client)
        self.open_for, self.gate, self.puts = open_for, threading.Event(), 0
        self.lock = threading.Lock()

    def put_bytes(self, bucket, key, data, content_type="application/octet-stream", metadata=None):  # noqa: ANN001
        if "/packs/" in key:
            with self.lock:
                self.puts += 1
                n = self.puts
            if n > self.open_for and not self.gate.wait(60):
                self.gate.set()  # the watcher is gone: let the test fail, never hang
        super().put_bytes(bucket, key, data, content_type, metadata)


def test_first_batches_are_published_before_the_video_is_read(settings, module_infra, demo, unique):
    """Frame uploads stall after two batches (packs) until a consumer has seen the first batch: the
    ingest can only finish if batches go out while decoding is still going on."""
    store = GatedStore(ObjectStore.from_settings(settings).client, open_for=2)
    server, _ = _serve(settings, store=store, upload_workers=2)
    ch, s = stub(server.port)
    vid = f"stream-{unique}"
    seen_first = threading.Event()
    done_when_first_seen: list[bool] = []
    ingest_done = threading.Event()

    def watch() -> None:
        try:
            c = consumer(module_infra.kafka_bootstrap)
            while not seen_first.is_set() and not ingest_done.is_set():
                records = [r for recs in c.poll(timeout_ms=200).values() for r in recs]
                if any(events_pb2.FramesIngested.FromString(r.value).video_id == vid for r in records):
                    done_when_first_seen.append(ingest_done.is_set())
                    seen_first.set()
            c.close()
        finally:
            store.gate.set()  # also when the watcher fails: the assertions below then say so

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    progress = []
    try:
        for p in s.IngestPath(storage_pb2.IngestPathRequest(path=str(demo.video), options=storage_pb2.IngestOptions(
                video_id=vid, batch_size=8, sample_fps=-1, dedup_threshold=-2)), metadata=md()):
            progress.append(p)
            if p.batches_published and not p.done:
                mid = s.ListVideos(storage_pb2.ListVideosRequest(), metadata=md()).videos
                assert not {v.video_id: v for v in mid}[vid].complete
    finally:
        ingest_done.set()
        store.gate.set()
        watcher.join(10)
        ch.close()
        server.stop()
    assert done_when_first_seen == [False], "the consumer saw no batch while the ingest was running"
    early = [p for p in progress if p.batches_published > 0 and not p.done]
    assert early and early[0].frames_decoded < progress[-1].frames_decoded == 300
    assert progress[-1].frames_stored == 300 and progress[-1].batches_published == 300 // 8 + 1


def test_demo_video_keeps_ground_truth(storage, demo, module_infra, unique):
    vid = f"demo-{unique}"
    last = ingest_path(storage, demo.video, video_id=vid, sample_fps=-1,
                       ground_truth_csv=str(demo.ground_truth))[-1]
    assert last.frames_decoded == 300 and last.frames_unsampled == 0
    assert last.frames_stored + last.frames_dropped_duplicate == 300
    frames = storage.ListFrames(storage_pb2.ListFramesRequest(video_id=vid, page=common_pb2.Page(page_size=1000)),
                                metadata=md()).frames
    assert all(f.ground_truth == demo.labels[f.frame_index] for f in frames)
    assert {f.ground_truth for f in frames} == set(synthetic.CLASSES)
    events = collect(module_infra.kafka_bootstrap, vid, len(frames))
    assert {f.frame_id: f.ground_truth for e in events for f in e.frames} == {f.frame_id: f.ground_truth for f in frames}


def _jpg(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)


def test_kvasir_tree_keeps_labels_and_skips_a_corrupt_image(storage, data_dir, unique):
    root = data_dir / f"kvasir-{unique}"
    imgs = [img for img, _ in synthetic.render(12, seed=11, size=64)]
    classes = ["Angiectasia", "Normal clean mucosa", "Ulcer"]
    for i, img in enumerate(imgs):
        _jpg(root / "labelled_images" / classes[i % 3] / f"img{i:02d}.jpg", img)
    good = (root / "labelled_images" / "Ulcer" / "img02.jpg").read_bytes()
    (root / "labelled_images" / "Ulcer" / "broken.jpg").write_bytes(good[: len(good) // 3])
    (root / "metadata.csv").write_text("filename;video_id;frame_number;finding_category;finding_class\n"
                                       "img00.jpg;abc123;42;Vascular;Angiectasia\n")
    last = ingest_path(storage, root, role=auth.ADMIN)[-1]
    assert last.done and last.frames_stored == 12 and last.frames_skipped == 1
    assert "broken.jpg" in last.skipped[0] and last.frames_dropped_duplicate == 0
    frames = storage.ListFrames(storage_pb2.ListFramesRequest(video_id=last.video_id), metadata=md()).frames
    assert sorted({f.ground_truth for f in frames}) == classes
    first = [f for f in frames if f.source.startswith("labelled_images/Angiectasia/img00.jpg")][0]
    assert "abc123" in first.source and first.ground_truth == "Angiectasia"
    stored = storage.GetFrame(storage_pb2.GetFrameRequest(frame_id=first.frame_id), metadata=md()).image
    assert stored == (root / "labelled_images" / "Angiectasia" / "img00.jpg").read_bytes()  # kept as-is
    info = {v.video_id: v for v in storage.ListVideos(storage_pb2.ListVideosRequest(), metadata=md()).videos}
    assert info[last.video_id].kind == "kvasir" and info[last.video_id].frames_skipped == 1


def test_image_folder_drops_near_duplicates(storage, data_dir, unique):
    folder = data_dir / f"frames-{unique}"
    imgs = [img for img, _ in synthetic.render(60, seed=12, size=64)][::10]
    for i, img in enumerate(imgs):
        for j in range(3):  # every image three times, like a camera resting
            _jpg(folder / f"f{i:02d}_{j}.jpg", img)
    last = ingest_path(storage, folder)[-1]
    assert last.frames_decoded == 18 and last.frames_stored == 6 and last.frames_dropped_duplicate == 12


def _expect(code: grpc.StatusCode, text: str, fn, *args, **kwargs) -> None:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kwargs)
    assert e.value.code() == code, (e.value.code(), e.value.details())
    assert text in e.value.details(), e.value.details()


def test_bad_input_gets_a_clear_status_and_harms_nothing(storage, object_store, data_dir, demo, unique):
    video = need_vtest()
    keep = f"keep-{unique}"
    ingest_path(storage, demo.video, video_id=keep)
    before = keys_and_etags(object_store)
    bad = data_dir / f"bad-{unique}"
    bad.mkdir()
    data = video.read_bytes()
    (bad / "truncated.avi").write_bytes(data[: len(data) // 3])
    (bad / "notavideo.mp4").write_text("this is a text file, not a video\n" * 100)
    corrupt = bytearray(data)
    corrupt[40_000: 400_000] = bytes(np.random.default_rng(0).integers(0, 256, 360_000, dtype=np.uint8))
    (bad / "corrupt.avi").write_bytes(bytes(corrupt))
    (bad / "empty").mkdir()
    inv, nf = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    _expect(inv, "corrupt or truncated", ingest_path, storage, bad / "truncated.avi", video_id=f"t-{unique}")
    _expect(inv, "not a readable video", ingest_path, storage, bad / "notavideo.mp4", video_id=f"n-{unique}")
    _expect(inv, "corrupt", ingest_path, storage, bad / "corrupt.avi", video_id=f"c-{unique}")
    _expect(inv, "corrupt or truncated", upload, storage, data[: len(data) // 3], video_id=f"tu-{unique}")
    _expect(inv, "empty upload", upload, storage, b"", video_id=f"e-{unique}")
    _expect(inv, "no images", ingest_path, storage, bad / "empty")
    _expect(inv, "outside the allowed ingest roots", ingest_path, storage, "/etc/passwd")
    _expect(inv, "outside the allowed ingest roots", ingest_path, storage, f"{data_dir}/../../etc/passwd")
    _expect(inv, "must be absolute", ingest_path, storage, "relative/video.avi")
    _expect(nf, "does not exist", ingest_path, storage, data_dir / "missing.avi")
    _expect(inv, "invalid video_id", ingest_path, storage, demo.video, video_id="../escape")
    _expect(inv, "dedup_threshold", ingest_path, storage, demo.video, dedup_threshold=99)
    _expect(inv, "batch_size", ingest_path, storage, demo.video, batch_size=-3)
    _expect(inv, "sample_fps", ingest_path, storage, demo.video, sample_fps=float("nan"))
    _expect(nf, "ground_truth_csv", ingest_path, storage, demo.video, ground_truth_csv=str(data_dir / "nope.csv"))
    _expect(inv, "line 2", upload, storage, demo.video.read_bytes(), ground_truth_csv_data=b"frame_index,label\nx,y\n")
    _expect(grpc.StatusCode.ALREADY_EXISTS, "different content", ingest_path, storage, video, video_id=keep)
    only_chunks = iter([storage_pb2.IngestVideoRequest(chunk=b"abc")])
    _expect(inv, "first IngestVideoRequest must carry options", lambda: list(storage.IngestVideo(only_chunks, metadata=md())))
    req = storage_pb2.GetFrameRequest
    _expect(nf, "no frame", storage.GetFrame, req(frame_id=f"{keep}:999999"), metadata=md())
    _expect(nf, "no frame", storage.GetFrame, req(frame_id=f"nosuchvideo-{unique}:000000"), metadata=md())
    _expect(inv, "invalid frame id", storage.GetFrame, req(frame_id="../../manifests/x:000001"), metadata=md())
    _expect(inv, "invalid frame id", storage.GetFrame, req(frame_id="garbage"), metadata=md())
    _expect(nf, "no frame", storage.GetFrameUrl, req(frame_id=f"{keep}:999999"), metadata=md())
    _expect(inv, "url_ttl_s", storage.GetFrameUrl, req(frame_id=f"{keep}:000000", url_ttl_s=10**8), metadata=md())
    _expect(nf, "no frame", lambda: list(storage.GetFrames(storage_pb2.GetFramesRequest(
        frame_ids=[f"{keep}:000000", f"{keep}:999999"]), metadata=md())))
    _expect(nf, "no video", storage.ListFrames, storage_pb2.ListFramesRequest(video_id=f"none-{unique}"), metadata=md())
    _expect(inv, "page_token", storage.ListFrames, storage_pb2.ListFramesRequest(
        page=common_pb2.Page(page_token="!!not-a-token")), metadata=md())
    assert keys_and_etags(object_store) == before, "bad input changed what was stored"


def test_auth(storage, demo):
    req = storage_pb2.IngestPathRequest(path=str(demo.video))
    _expect(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token", lambda: list(storage.IngestPath(req)))
    _expect(grpc.StatusCode.UNAUTHENTICATED, "signature",
            lambda: list(storage.IngestPath(req, metadata=md(auth.ADMIN, secret="wrong"))))
    for role in (auth.ANNOTATOR, auth.REVIEWER):
        _expect(grpc.StatusCode.PERMISSION_DENIED, "needs admin", lambda r=role: list(storage.IngestPath(req, metadata=md(r))))
    _expect(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token", storage.ListVideos, storage_pb2.ListVideosRequest())
    _expect(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token", storage.GetFrame, storage_pb2.GetFrameRequest(frame_id="a:000001"))
    assert storage.ListVideos(storage_pb2.ListVideosRequest(), metadata=md(auth.ANNOTATOR)) is not None


def test_oversized_upload_is_refused_and_nothing_is_left(settings, object_store, data_dir, unique):
    spool = data_dir / f"spool-{unique}"
    spool.mkdir()
    server, _ = _serve(settings, max_upload_bytes=100_000, spool_dir=str(spool))
    ch, s = stub(server.port)
    before = keys_and_etags(object_store)
    try:
        _expect(grpc.StatusCode.RESOURCE_EXHAUSTED, "exceeds the limit", upload, s, b"\0" * 300_000,
                chunk=50_000, video_id=f"big-{unique}")
    finally:
        ch.close()
        server.stop()
    assert list(spool.iterdir()) == [] and keys_and_etags(object_store) == before


class FailingStore(ObjectStore):
    """Real S3 whose 5th frame-pack upload fails (a disk fills up, a node dies)."""

    def __init__(self, client) -> None:  # noqa: ANN001
        super().__init__(client)
        self.puts, self.lock = 0, threading.Lock()

    def put_bytes(self, bucket, key, data, content_type="application/octet-stream", metadata=None):  # noqa: ANN001
        if "/packs/" in key:
            with self.lock:
                self.puts += 1
                if self.puts == 5:
                    raise OSError("injected upload failure")
        super().put_bytes(bucket, key, data, content_type, metadata)


def test_failure_mid_ingest_rolls_back_and_announces_it(settings, module_infra, object_store, demo, unique):
    server, _ = _serve(settings, store=FailingStore(ObjectStore.from_settings(settings).client), upload_workers=1)
    ch, s = stub(server.port)
    vid = f"fail-{unique}"
    seen = []
    try:
        with pytest.raises(grpc.RpcError) as e:
            for p in s.IngestPath(storage_pb2.IngestPathRequest(path=str(demo.video), options=storage_pb2.IngestOptions(
                    video_id=vid, batch_size=8, sample_fps=-1, dedup_threshold=-2)), metadata=md()):
                seen.append(p)
    finally:
        ch.close()
        server.stop()
    assert e.value.code() == grpc.StatusCode.INTERNAL and "injected upload failure" in e.value.details()
    assert max(p.batches_published for p in seen) >= 1
    assert keys_and_etags(object_store, f"videos/{vid}/") == {}
    assert keys_and_etags(object_store, manifest_key(vid)) == {}
    events = collect(module_infra.kafka_bootstrap, vid, 0, timeout_s=30)
    aborted = [ev for ev in events if ev.aborted]
    assert len(aborted) == 1 and aborted[0].last_batch and not aborted[0].frames
    assert not any(ev.last_batch for ev in events if not ev.aborted)


def test_kafka_down_is_unavailable_and_stores_nothing(settings, object_store, demo, unique):
    from lumenal.stack.processes import free_port
    server, _ = _serve(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    ch, s = stub(server.port)
    before = keys_and_etags(object_store)
    try:
        _expect(grpc.StatusCode.UNAVAILABLE, "not reachable", ingest_path, s, demo.video, video_id=f"nok-{unique}")
    finally:
        ch.close()
        server.stop()
    assert keys_and_etags(object_store) == before


def test_a_new_instance_rebuilds_the_index_from_s3(storage, settings, demo, unique):
    vid = f"restart-{unique}"
    ingest_path(storage, demo.video, video_id=vid)
    old = storage.ListFrames(storage_pb2.ListFramesRequest(video_id=vid, page=common_pb2.Page(page_size=1000)),
                             metadata=md())
    fresh = StorageServicer(settings).start()
    videos = {m.video_id: m for m in fresh.catalog.videos()}
    assert videos[vid].complete and list(videos[vid].frames) == list(old.frames)
    assert fresh.catalog.frames(vid, 1000, "").frames == old.frames
    fresh.close()
