"""Ingest throughput against raw decode of the same file with the same library (PyAV).

Used by the benchmark suite: ``measure`` needs a running S3 and Kafka (the
settings say where) and runs a real in-process storage server, so the
number includes gRPC, hashing, JPEG encoding, S3 puts and publishing.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import av

from lumenal.core import auth, grpc_server
from lumenal.storage import server as storage_server
from lumenal.storage.settings import StorageSettings
from lumenal.v1 import storage_pb2, storage_pb2_grpc


def decode_fps(video: Path) -> tuple[int, float]:
    """(frames, frames/s) of a plain PyAV decode with the same threading as ingest."""
    start = time.perf_counter()
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        n = sum(1 for _ in c.decode(s))
    return n, n / (time.perf_counter() - start)


def ingest_fps(settings: StorageSettings, video: Path, video_id: str, sample_fps: float = -1,
               dedup: int = -1) -> tuple[storage_pb2.IngestProgress, float]:
    """(final progress, decoded frames/s) of one IngestPath through a real in-process server."""
    root = str(video.resolve().parent)
    settings = dataclasses.replace(settings, ingest_roots=root)
    server, _ = storage_server.serve(settings, port=0, metrics_port=-1)
    token = auth.service_token(settings.auth_secret, "bench")
    try:
        with grpc_server.channel(f"127.0.0.1:{server.port}") as ch:
            stub = storage_pb2_grpc.StorageServiceStub(ch)
            req = storage_pb2.IngestPathRequest(path=str(video.resolve()), options=storage_pb2.IngestOptions(
                video_id=video_id, sample_fps=sample_fps, dedup_threshold=dedup))
            start = time.perf_counter()
            last = list(stub.IngestPath(req, metadata=auth.metadata(token)))[-1]
            elapsed = time.perf_counter() - start
    finally:
        server.stop()
    return last, last.frames_decoded / elapsed


def measure(settings: StorageSettings, video: Path, video_id: str, sample_fps: float = -1,
            dedup: int = -1, repeats: int = 3) -> dict[str, float]:
    """Median decode and ingest rates over ``repeats`` alternating runs (each ingest under a new
    video id), so a burst of load on a shared machine does not decide the ratio alone."""
    decodes, ingests = [], []
    for i in range(repeats):
        frames, raw = decode_fps(video)
        last, ingest = ingest_fps(settings, video, f"{video_id}-{i}", sample_fps, dedup)
        decodes.append(raw)
        ingests.append(ingest)
    raw, ingest = statistics.median(decodes), statistics.median(ingests)
    return {"frames": frames, "stored": last.frames_stored, "decode_fps": raw, "ingest_fps": ingest,
            "ratio": ingest / raw, "repeats": repeats, "decode_fps_runs": decodes, "ingest_fps_runs": ingests}
