"""StorageService: ingest (upload or path), frames, presigned URLs; ``python -m lumenal.storage``."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
from minio import Minio
from prometheus_client import Counter

from lumenal.core import auth, events, grpc_server, logs, topics
from lumenal.core.config import listen_port
from lumenal.core.errors import InvalidArgument, ResourceExhausted, Unavailable
from lumenal.core.objectstore import FRAMES_BUCKET, ObjectStore
from lumenal.storage import keys, media, packs, sources
from lumenal.storage.catalog import Catalog
from lumenal.storage.ingest import Ingestor, Job, video_job
from lumenal.storage.settings import StorageSettings, load
from lumenal.v1 import storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)

UPLOAD_BYTES = Counter("lumenal_storage_upload_bytes_total", "bytes received by IngestVideo")
MAX_TTL_S = 7 * 24 * 3600  # S3's limit for presigned URLs
MAX_BATCH = 10_000
MAX_GET_FRAMES = 10_000
GET_FRAMES_CHUNK = 256  # frames read (and held) at once by GetFrames


def kafka_reachable(bootstrap: str, timeout_s: float = 1.0) -> bool:
    for hostport in bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, settings: StorageSettings, store: ObjectStore | None = None) -> None:
        self.settings = settings
        self.store = store or ObjectStore.from_settings(settings)
        self.catalog = Catalog(self.store)
        self.packs = packs.PackReader(self.store)
        self.ingestor = Ingestor(settings, self.store, self.catalog, self.publisher, self.packs)
        self._publisher: events.Publisher | None = None
        self._lock = threading.Lock()
        self._presigner = self._make_presigner()

    # -- plumbing -------------------------------------------------------------
    def start(self) -> StorageServicer:
        """Create the bucket and load the index from S3 (state survives restarts)."""
        self.store.ensure_bucket(FRAMES_BUCKET)
        self.catalog.refresh(force=True)
        log.info("index loaded", extra={"videos": len(self.catalog.videos())})
        return self

    def publisher(self) -> events.Publisher:
        with self._lock:
            if self._publisher is None:
                if not kafka_reachable(self.settings.kafka_bootstrap):
                    raise Unavailable(f"Kafka broker at {self.settings.kafka_bootstrap} is not reachable; "
                                      "nothing was stored, try again when it is up")
                try:
                    events.ensure_topics(self.settings.kafka_bootstrap,
                                         {topics.FRAMES_INGESTED: topics.PARTITIONS[topics.FRAMES_INGESTED]},
                                         timeout_s=10)
                    self._publisher = events.Publisher(self.settings.kafka_bootstrap, "lumenal-storage")
                except Exception as exc:  # noqa: BLE001 - any broker failure is "unavailable"
                    raise Unavailable(f"Kafka broker at {self.settings.kafka_bootstrap} is not reachable: {exc}") from None
            return self._publisher

    def close(self) -> None:
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None

    def healthy(self) -> bool:
        return self.store.healthy() and kafka_reachable(self.settings.kafka_bootstrap)

    def _make_presigner(self) -> Minio:
        """A client for signing only; the URL's host is the endpoint browsers reach."""
        s = self.settings
        endpoint = s.public_s3_endpoint or s.s3_endpoint
        return Minio(endpoint, access_key=s.s3_access_key, secret_key=s.s3_secret_key,
                     secure=s.s3_secure, region=s.s3_region)

    def _caller(self, context: grpc.ServicerContext, role: str | None = None) -> auth.Principal:
        principal = auth.authenticate(context, self.settings.auth_secret)
        if role:
            auth.require(principal, role)
        return principal

    # -- ingest ---------------------------------------------------------------
    def _options(self, o: storage_pb2.IngestOptions) -> tuple[float, int, int]:
        """Effective (sample_fps, dedup_threshold, batch_size); INVALID_ARGUMENT when malformed."""
        if not math.isfinite(o.sample_fps):
            raise InvalidArgument(f"sample_fps must be a finite number, got {o.sample_fps}")
        fps = self.settings.sample_fps if o.sample_fps == 0 else (-1.0 if o.sample_fps < 0 else o.sample_fps)
        if o.dedup_threshold > 64:
            raise InvalidArgument(f"dedup_threshold must be <= 64 (bits of the hash), got {o.dedup_threshold}")
        dedup = self.settings.dedup_threshold if o.dedup_threshold == -1 else max(o.dedup_threshold, -2)
        if o.batch_size < 0 or o.batch_size > MAX_BATCH:
            raise InvalidArgument(f"batch_size must be between 0 and {MAX_BATCH}, got {o.batch_size}")
        if o.video_id:
            keys.check_video_id(o.video_id)
        return fps, dedup, o.batch_size or self.settings.batch_size

    def _ground_truth(self, o: storage_pb2.IngestOptions) -> tuple[dict[int, str] | None, str]:
        if o.ground_truth_csv_data:
            data = o.ground_truth_csv_data
        elif o.ground_truth_csv:
            path = sources.resolve(o.ground_truth_csv, self.settings.roots(), "ground_truth_csv")
            if not path.is_file():
                raise InvalidArgument(f"ground_truth_csv {o.ground_truth_csv!r} is not a file")
            data = path.read_bytes()
        else:
            return None, ""
        return sources.parse_ground_truth(data), hashlib.sha256(data).hexdigest()

    def _video(self, path: Path, sha: str, o: storage_pb2.IngestOptions) -> Job:
        fps, dedup, batch = self._options(o)
        gt, gt_sha = self._ground_truth(o)
        vid = o.video_id or keys.content_video_id(sha)
        return video_job(path, vid, o.filename or path.name, sha, fps, dedup, batch, gt, gt_sha)

    def _images(self, folder: Path, o: storage_pb2.IngestOptions) -> Job:
        fps, dedup, batch = self._options(o)
        if o.ground_truth_csv or o.ground_truth_csv_data:
            raise InvalidArgument("ground_truth_csv applies to videos; a Kvasir-Capsule tree carries its labels")
        images = sources.image_set(folder, self.settings.roots())
        # Labelled images were each chosen by annotators: never drop one as a duplicate.
        dedup = -2 if images.kind == "kvasir" else dedup
        sha = sources.image_set_sha256(images)
        items = [(it.path, it.source, it.ground_truth) for it in images.items]
        return Job(o.video_id or keys.content_video_id(sha), images.kind, o.filename or folder.name, sha,
                   0.0, dedup, batch, lambda counts: media.iter_images(items, dedup, counts),
                   total_estimate=len(items), skipped_upfront=images.outside)

    def IngestPath(self, request: storage_pb2.IngestPathRequest, context: grpc.ServicerContext
                   ) -> Iterator[storage_pb2.IngestProgress]:
        self._caller(context, auth.ADMIN)
        self._options(request.options)
        path = sources.resolve(request.path, self.settings.roots())
        if path.is_dir():
            job = self._images(path, request.options)
        elif path.is_file():
            job = self._video(path, sources.sha256_file(path), request.options)
        else:
            raise InvalidArgument(f"{request.path!r} is neither a file nor a folder")
        log.info("ingest path", extra={"path": str(path), "video_id": job.video_id, "kind": job.kind})
        yield from self.ingestor.run(job)

    def IngestVideo(self, request_iterator: Iterator[storage_pb2.IngestVideoRequest],
                    context: grpc.ServicerContext) -> Iterator[storage_pb2.IngestProgress]:
        self._caller(context, auth.ADMIN)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "options":
            raise InvalidArgument("the first IngestVideoRequest must carry options (then chunks)")
        options = first.options
        self._options(options)
        if options.ground_truth_csv:
            raise InvalidArgument("an upload sends its ground truth inline (ground_truth_csv_data), not as a path")
        spool = Path(self.settings.spool_dir or tempfile.gettempdir())
        suffix = Path(options.filename).suffix if options.filename else ""
        fd, name = tempfile.mkstemp(prefix="lumenal-upload-", suffix=suffix[:16], dir=spool)
        path = Path(name)
        try:
            sha = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as f:
                for req in request_iterator:
                    if req.WhichOneof("payload") != "chunk":
                        raise InvalidArgument("options may only be sent once, in the first message")
                    size += len(req.chunk)
                    if size > self.settings.max_upload_bytes:
                        raise ResourceExhausted(f"upload exceeds the limit of {self.settings.max_upload_bytes} "
                                                "bytes (LUMENAL_STORAGE_MAX_UPLOAD_BYTES)")
                    f.write(req.chunk)
                    sha.update(req.chunk)
            UPLOAD_BYTES.inc(size)
            if size == 0:
                raise InvalidArgument("empty upload: no video bytes were sent")
            yield storage_pb2.IngestProgress(bytes_received=size)
            job = self._video(path, sha.hexdigest(), options)
            log.info("ingest upload", extra={"bytes": size, "video_id": job.video_id})
            for progress in self.ingestor.run(job):
                progress.bytes_received = size
                yield progress
        finally:
            path.unlink(missing_ok=True)

    # -- reads ----------------------------------------------------------------
    def _get(self, frame_ids: list[str]) -> list[storage_pb2.Frame]:
        """Frames in the order asked; one ranged read per pack (ids of one video, one batch)."""
        parsed = [keys.parse_frame_id(fid) for fid in frame_ids]
        by_video: dict[str, list[int]] = {}
        for video_id, index in parsed:
            by_video.setdefault(video_id, []).append(index)
        found = {}
        for video_id, indexes in by_video.items():
            for meta, data in self.packs.read(video_id, indexes):
                found[meta.frame_id] = storage_pb2.Frame(meta=meta, image=data)
        return [found[keys.frame_id(v, i)] for v, i in parsed]

    def GetFrame(self, request: storage_pb2.GetFrameRequest, context: grpc.ServicerContext) -> storage_pb2.Frame:
        self._caller(context)
        return self._get([request.frame_id])[0]

    def GetFrames(self, request: storage_pb2.GetFramesRequest, context: grpc.ServicerContext
                  ) -> Iterator[storage_pb2.Frame]:
        self._caller(context)
        if len(request.frame_ids) > MAX_GET_FRAMES:
            raise InvalidArgument(f"at most {MAX_GET_FRAMES} frame ids per call, got {len(request.frame_ids)}")
        ids = list(request.frame_ids)
        for fid in ids:  # validate all before streaming any
            keys.parse_frame_id(fid)
        for start in range(0, len(ids), GET_FRAMES_CHUNK):
            yield from self._get(ids[start:start + GET_FRAMES_CHUNK])

    def ListFrames(self, request: storage_pb2.ListFramesRequest, context: grpc.ServicerContext
                   ) -> storage_pb2.ListFramesResponse:
        self._caller(context)
        return self.catalog.frames(request.video_id, request.page.page_size, request.page.page_token)

    def GetFrameUrl(self, request: storage_pb2.GetFrameRequest, context: grpc.ServicerContext
                    ) -> storage_pb2.FrameUrl:
        self._caller(context)
        ttl = request.url_ttl_s or self.settings.presign_ttl_s
        if ttl < 0 or ttl > MAX_TTL_S:
            raise InvalidArgument(f"url_ttl_s must be between 1 and {MAX_TTL_S}, got {request.url_ttl_s}")
        video_id, index = keys.parse_frame_id(request.frame_id)
        key = self.packs.materialise(video_id, index)
        url = self._presigner.presigned_get_object(FRAMES_BUCKET, key, expires=timedelta(seconds=ttl))
        return storage_pb2.FrameUrl(url=url, expires_in_s=ttl)

    def ListVideos(self, request: storage_pb2.ListVideosRequest, context: grpc.ServicerContext
                   ) -> storage_pb2.ListVideosResponse:
        self._caller(context)
        return storage_pb2.ListVideosResponse(videos=[m.info() for m in self.catalog.videos()])


def serve(settings: StorageSettings, port: int | None = None, metrics_port: int | None = None,
          store: ObjectStore | None = None) -> tuple[grpc_server.Server, StorageServicer]:
    """Start the server (tests pass port 0 and metrics port -1)."""
    servicer = StorageServicer(settings, store).start()
    server = grpc_server.start(
        "storage", listen_port(settings.storage_addr) if port is None else port,
        [(storage_pb2_grpc.add_StorageServiceServicer_to_server, servicer, "lumenal.v1.StorageService")],
        metrics_port=settings.metrics_port if metrics_port is None else metrics_port,
        probe=servicer.healthy, host=settings.bind_host)
    server.on_stop.append(servicer.close)
    return server, servicer


def _wait_for_s3(settings: StorageSettings, stop: Callable[[], bool] = lambda: False) -> None:
    """S3 may start after us (supervisors start things in parallel): retry until it answers."""
    store = ObjectStore.from_settings(settings)
    delay = 0.5
    while not stop():
        try:
            store.ensure_bucket(FRAMES_BUCKET)
            return
        except Exception as exc:  # noqa: BLE001 - keep trying, say why
            log.warning("S3 not reachable yet", extra={"endpoint": settings.s3_endpoint, "error": str(exc)})
            time.sleep(delay)
            delay = min(delay * 2, 5)


def main() -> None:
    settings = load()
    logs.setup("storage", settings.log_level)
    _wait_for_s3(settings)
    server, _ = serve(settings)
    server.wait()


if __name__ == "__main__":
    main()
