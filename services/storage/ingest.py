"""One ingest: decode -> sample -> de-duplicate -> store in S3 -> publish, as a stream.

Frames are encoded by a small thread pool while the next ones decode; the
frames of each ``frames.ingested`` batch are stored as one pack object
(``packs.py``: one S3 PUT per batch, not per frame) and the batch is
published as soon as its pack is stored, so consumers start on the first
frames long before the video ends. The final batch carries ``last_batch``.

Failure is all or nothing: bad input is rejected before anything is
written where possible (the demux probe); a failure during decoding removes
every object of the video and publishes an ``aborted`` event when batches
already went out. Re-ingesting the same content is a no-op that returns the
stored result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from minio.deleteobjects import DeleteObject
from prometheus_client import Counter, Histogram

from lumenal.core import topics
from lumenal.core.errors import AlreadyExists, FailedPrecondition
from lumenal.core.events import Publisher, now_ts
from lumenal.core.objectstore import FRAMES_BUCKET, ObjectStore
from lumenal.storage import keys, media, packs
from lumenal.storage.catalog import Catalog, Manifest, manifest_key
from lumenal.storage.settings import StorageSettings
from lumenal.v1 import common_pb2, events_pb2, storage_pb2

log = logging.getLogger(__name__)

FRAMES = Counter("lumenal_storage_frames_total", "frames seen by ingest", ["outcome"])
INGESTS = Counter("lumenal_storage_ingests_total", "ingests", ["kind", "outcome"])
INGEST_SECONDS = Histogram("lumenal_storage_ingest_seconds", "ingest duration", ["kind"],
                           buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600))
PROGRESS_EVERY_S = 0.25


@dataclass
class Job:
    """A validated ingest request: what to read and the effective options."""

    video_id: str
    kind: str                   # video | images | kvasir
    filename: str
    content_sha256: str
    sample_fps: float
    dedup_threshold: int
    batch_size: int
    frames: Callable[[media.Counts], Iterator[media.KeptFrame]]
    total_estimate: int = 0
    ground_truth_sha256: str = ""
    skipped_upfront: list[str] = field(default_factory=list)

    def options(self) -> dict:
        return {"sample_fps": self.sample_fps, "dedup_threshold": self.dedup_threshold,
                "ground_truth_sha256": self.ground_truth_sha256}


class Ingestor:
    """Runs jobs; one at a time per video id."""

    def __init__(self, settings: StorageSettings, store: ObjectStore, catalog: Catalog,
                 publisher: Callable[[], Publisher], reader: packs.PackReader) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.publisher = publisher
        self.reader = reader
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def run(self, job: Job) -> Iterator[storage_pb2.IngestProgress]:
        with self._lock:
            if job.video_id in self._busy:
                raise FailedPrecondition(f"video {job.video_id} is being ingested right now; try again when it is done")
            self._busy.add(job.video_id)
        start, outcome = time.monotonic(), "failed"
        try:
            existing = self.catalog.read(job.video_id)
            if existing is not None and existing.complete:
                yield self._already(job, existing)
                outcome = "unchanged"
                return
            if existing is not None:
                log.info("clearing an unfinished earlier ingest", extra={"video_id": job.video_id})
                self._remove_all(job.video_id)
            yield from _Run(self, job).stream()
            outcome = "ok"
        finally:
            with self._lock:
                self._busy.discard(job.video_id)
            INGESTS.labels(job.kind, outcome).inc()
            INGEST_SECONDS.labels(job.kind).observe(time.monotonic() - start)

    def _already(self, job: Job, m: Manifest) -> storage_pb2.IngestProgress:
        if m.content_sha256 != job.content_sha256:
            raise AlreadyExists(f"video_id {job.video_id} already holds different content "
                                f"(sha256 {m.content_sha256[:12]}..., this is {job.content_sha256[:12]}...); "
                                "choose another video_id")
        if m.options != job.options():
            raise AlreadyExists(f"video {job.video_id} was already ingested with other options {m.options}; "
                                "use another video_id to ingest it again with these options")
        log.info("already ingested; nothing to do", extra={"video_id": job.video_id})
        return storage_pb2.IngestProgress(
            video_id=job.video_id, frames_decoded=m.frames_decoded, frames_stored=len(m.frames),
            frames_dropped_duplicate=m.frames_dropped_duplicate, frames_unsampled=m.frames_unsampled,
            frames_skipped=len(m.skipped), skipped=m.skipped, total_frames_estimate=job.total_estimate,
            done=True, already_ingested=True)

    def _remove_all(self, video_id: str) -> None:
        """Delete every object of ``video_id`` (frames, then the manifest)."""
        names = list(self.store.list_keys(FRAMES_BUCKET, keys.video_prefix(video_id)))
        errors = list(self.store.client.remove_objects(FRAMES_BUCKET, (DeleteObject(n) for n in names)))
        for err in errors:  # fall back to one by one for a store without multi-delete
            self.store.remove(FRAMES_BUCKET, err.name)
        self.reader.forget(video_id)
        if self.store.exists(FRAMES_BUCKET, manifest_key(video_id)):
            self.catalog.delete(video_id)


class _Run:
    """State of one running ingest."""

    def __init__(self, ingestor: Ingestor, job: Job) -> None:
        self.i = ingestor
        self.job = job
        self.s = ingestor.settings
        self.counts = media.Counts(skipped=list(job.skipped_upfront))
        self.frames: list[common_pb2.FrameMeta] = []
        self.batches = 0
        self.acks: list = []
        self.manifest = Manifest(job.video_id, job.filename, job.kind, job.content_sha256, job.options())

    def progress(self, done: bool = False) -> storage_pb2.IngestProgress:
        c = self.counts
        return storage_pb2.IngestProgress(
            video_id=self.job.video_id, frames_decoded=c.decoded, frames_stored=len(self.frames),
            frames_dropped_duplicate=c.duplicates, frames_unsampled=c.unsampled,
            batches_published=self.batches, total_frames_estimate=self.job.total_estimate, done=done,
            frames_skipped=len(c.skipped), skipped=c.skipped if done else [])

    def stream(self) -> Iterator[storage_pb2.IngestProgress]:
        publisher = self.i.publisher()  # fail fast (UNAVAILABLE) before writing anything
        self.i.catalog.write(self.manifest)
        workers = max(1, self.s.upload_workers)
        encoders = ThreadPoolExecutor(workers, thread_name_prefix="encode")
        uploads = ThreadPoolExecutor(max(1, workers // 4), thread_name_prefix="upload")
        ok = False
        try:
            yield self.progress()
            yield from self._pipeline(encoders, uploads, publisher)
            for ack in self.acks:
                ack.get(timeout=60)  # every batch is on the broker before we call it done
            self._finish()
            ok = True
            log.info("ingested", extra={"video_id": self.job.video_id, "decoded": self.counts.decoded,
                                        "stored": len(self.frames), "duplicates": self.counts.duplicates,
                                        "batches": self.batches})
            yield self.progress(done=True)
        finally:
            encoders.shutdown(wait=True, cancel_futures=True)
            uploads.shutdown(wait=True, cancel_futures=True)
            if not ok:
                self._rollback(publisher)

    def _pipeline(self, encoders: ThreadPoolExecutor, uploads: ThreadPoolExecutor,
                  publisher: Publisher) -> Iterator[storage_pb2.IngestProgress]:
        stored: deque[tuple[list[common_pb2.FrameMeta], Future]] = deque()  # packs being stored, in order
        current: list[tuple[common_pb2.FrameMeta, Future]] = []
        inflight: deque[Future] = deque()
        max_inflight = max(4 * self.s.upload_workers, self.job.batch_size)
        last_progress = time.monotonic()
        for kept in self.job.frames(self.counts):
            meta = self._meta(kept)
            fut = encoders.submit(media.encode_kept, kept, self.s.frame_format, self.s.jpeg_quality)
            current.append((meta, fut))
            inflight.append(fut)
            while len(inflight) > max_inflight:
                inflight.popleft().result()
            if len(current) == self.job.batch_size:
                stored.append(([m for m, _ in current], uploads.submit(self._store_pack, current)))
                current = []
            # Publish every stored batch that is known not to be the last one.
            published = False
            while stored and (len(stored) > 1 or current) and stored[0][1].done():
                self._publish(publisher, *stored.popleft(), last=False)
                published = True
            if published or time.monotonic() - last_progress > PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                yield self.progress()
        if current:
            stored.append(([m for m, _ in current], uploads.submit(self._store_pack, current)))
        while stored:
            metas, done = stored.popleft()
            self._publish(publisher, metas, done, last=not stored)
        FRAMES.labels("unsampled").inc(self.counts.unsampled)
        FRAMES.labels("duplicate").inc(self.counts.duplicates)
        FRAMES.labels("skipped").inc(len(self.counts.skipped))

    def _meta(self, kept: media.KeptFrame) -> common_pb2.FrameMeta:
        vid = self.job.video_id
        content_type = kept.content_type or ("image/png" if self.s.frame_format == "png" else "image/jpeg")
        return common_pb2.FrameMeta(
            frame_id=keys.frame_id(vid, kept.index), video_id=vid, frame_index=kept.index,
            timestamp_s=kept.time_s, object_key=keys.frame_key(vid, kept.index), width=kept.width,
            height=kept.height, content_type=content_type, ground_truth=kept.ground_truth,
            source=kept.source, phash=media.hash_hex(kept.phash))

    def _store_pack(self, batch: list[tuple[common_pb2.FrameMeta, Future]]) -> None:
        """One PUT for the whole batch (runs in an upload thread; waits for its encodes)."""
        frames = [(meta, fut.result()[0]) for meta, fut in batch]
        first = batch[0][0]
        self.i.store.put_bytes(FRAMES_BUCKET, packs.pack_key(first.video_id, first.frame_index),
                               packs.build(frames), packs.CONTENT_TYPE)
        FRAMES.labels("stored").inc(len(frames))

    def _publish(self, publisher: Publisher, metas: list[common_pb2.FrameMeta], stored: Future,
                 last: bool) -> None:
        stored.result()  # raises the upload's error, if any
        event = events_pb2.FramesIngested(video_id=self.job.video_id, frames=metas,
                                          ingested_at=now_ts(), last_batch=last)
        self.acks.append(publisher.publish(topics.FRAMES_INGESTED, event, metas[0].frame_id))
        self.frames += metas
        self.batches += 1

    def _finish(self) -> None:
        m = self.manifest
        m.complete, m.completed_at, m.frames = True, time.time(), self.frames
        m.frames_decoded, m.frames_unsampled = self.counts.decoded, self.counts.unsampled
        m.frames_dropped_duplicate, m.skipped = self.counts.duplicates, self.counts.skipped
        self.i.catalog.write(m)

    def _rollback(self, publisher: Publisher) -> None:
        """Leave nothing behind; tell consumers to forget batches they already got."""
        vid = self.job.video_id
        log.warning("ingest failed; removing its objects", extra={"video_id": vid, "batches": self.batches})
        try:
            self.i._remove_all(vid)
        except Exception:  # noqa: BLE001 - report the original error, log this one
            log.exception("rollback failed", extra={"video_id": vid})
        if self.batches:
            try:
                event = events_pb2.FramesIngested(video_id=vid, ingested_at=now_ts(), last_batch=True,
                                                  aborted=True)
                publisher.publish_sync(topics.FRAMES_INGESTED, event, vid, timeout_s=10)
            except Exception:  # noqa: BLE001
                log.exception("could not publish the aborted event", extra={"video_id": vid})


def video_job(path: Path, video_id: str, filename: str, sha: str, sample_fps: float, dedup: int,
              batch_size: int, ground_truth: dict[int, str] | None, gt_sha: str) -> Job:
    """Probe first (rejects non-videos and truncated files before anything is stored)."""
    probe = media.probe_video(path)
    return Job(video_id, "video", filename, sha, sample_fps, dedup, batch_size,
               lambda counts: media.iter_video(path, sample_fps, dedup, counts, ground_truth),
               total_estimate=probe.packets, ground_truth_sha256=gt_sha)
