"""Helpers shared by the storage integration tests (holds no tests itself)."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from kafka import KafkaConsumer, TopicPartition

from lumenal.core import auth, topics
from lumenal.v1 import events_pb2, storage_pb2, storage_pb2_grpc

SECRET = "test-secret"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def need_vtest() -> Path:
    if not VTEST.exists():
        pytest.skip("needs the Debian package opencv-doc (examples/data/vtest.avi): apt-get install opencv-doc")
    return VTEST


def md(role: str = auth.SERVICE, secret: str = SECRET) -> tuple:
    token = auth.issue_token(secret, f"test-{role}", role, 600)[0]
    return auth.metadata(token)


def stub(port: int) -> tuple[grpc.Channel, storage_pb2_grpc.StorageServiceStub]:
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    return ch, storage_pb2_grpc.StorageServiceStub(ch)


def ingest_path(s: storage_pb2_grpc.StorageServiceStub, path: Path | str, role: str = auth.SERVICE,
                **options: object) -> list[storage_pb2.IngestProgress]:
    opts = storage_pb2.IngestOptions(**{"dedup_threshold": -1, **options})
    return list(s.IngestPath(storage_pb2.IngestPathRequest(path=str(path), options=opts), metadata=md(role)))


def upload(s: storage_pb2_grpc.StorageServiceStub, data: bytes, chunk: int = 256 * 1024,
           **options: object) -> list[storage_pb2.IngestProgress]:
    opts = storage_pb2.IngestOptions(**{"dedup_threshold": -1, **options})

    def reqs():
        yield storage_pb2.IngestVideoRequest(options=opts)
        for i in range(0, len(data), chunk):
            yield storage_pb2.IngestVideoRequest(chunk=data[i: i + chunk])
    return list(s.IngestVideo(reqs(), metadata=md()))


def consumer(bootstrap: str) -> KafkaConsumer:
    """Reads every partition of frames.ingested from the start (no group: no join delay)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + 30
    parts = None
    while not parts and time.monotonic() < deadline:
        parts = c.partitions_for_topic(topics.FRAMES_INGESTED)
        if not parts:
            c.topics()
            time.sleep(0.2)
    assert parts, "frames.ingested has no partitions"
    tps = [TopicPartition(topics.FRAMES_INGESTED, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    return c


def collect(bootstrap: str, video_id: str, frames: int, timeout_s: float = 60,
            ) -> list[events_pb2.FramesIngested]:
    """The video's events, once they hold ``frames`` frames and the last batch."""
    c = consumer(bootstrap)
    out: list[events_pb2.FramesIngested] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                for r in recs:
                    e = events_pb2.FramesIngested.FromString(r.value)
                    if e.video_id == video_id:
                        out.append(e)
            if sum(len(e.frames) for e in out) >= frames and any(e.last_batch for e in out):
                break
    finally:
        c.close()
    return out


def keys_and_etags(object_store, prefix: str = "") -> dict[str, str]:
    return {o.object_name: o.etag for o in object_store.client.list_objects("lumenal-frames", prefix=prefix,
                                                                           recursive=True)}
