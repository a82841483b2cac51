"""``lumenal ingest PATH``: send a video, image folder or Kvasir-Capsule tree to the storage service.

By default the service reads PATH itself (same host, inside its ingest
roots); ``--upload`` streams a video file to it instead. A progress bar
follows the service's progress stream.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
from tqdm import tqdm

from lumenal.core import auth, grpc_server
from lumenal.core.config import CommonSettings, from_env
from lumenal.v1 import storage_pb2, storage_pb2_grpc

CHUNK = 1 << 20


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lumenal ingest", description=__doc__.splitlines()[0])
    p.add_argument("path", type=Path, help="video file, folder of images, or Kvasir-Capsule root")
    p.add_argument("--fps", type=float, default=0.0, help="frames per second to keep (0 = service default, -1 = all)")
    p.add_argument("--dedup", type=int, default=-1,
                   help="max Hamming distance (of 64 bits) to drop a near-duplicate; -1 = service default, -2 = keep all")
    p.add_argument("--ground-truth", type=Path, help="CSV 'frame_index,label' for a video")
    p.add_argument("--video-id", default="", help="id to store under (default: derived from the content)")
    p.add_argument("--batch-size", type=int, default=0, help="frames per frames.ingested event (0 = default)")
    p.add_argument("--upload", action="store_true", help="stream the file to the service instead of sending its path")
    p.add_argument("--token", default=os.environ.get("LUMENAL_TOKEN", ""),
                   help="bearer token (default: $LUMENAL_TOKEN, else a service token from $LUMENAL_AUTH_SECRET)")
    p.add_argument("--addr", default="", help="storage service address (default: $LUMENAL_STORAGE_ADDR)")
    return p


def _upload(path: Path, options: storage_pb2.IngestOptions, bar: tqdm) -> Iterator[storage_pb2.IngestVideoRequest]:
    yield storage_pb2.IngestVideoRequest(options=options)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            bar.update(len(chunk))
            yield storage_pb2.IngestVideoRequest(chunk=chunk)


def _follow(stream: Iterator[storage_pb2.IngestProgress], frames: tqdm) -> storage_pb2.IngestProgress:
    last = storage_pb2.IngestProgress()
    for p in stream:
        if p.total_frames_estimate and frames.total != p.total_frames_estimate:
            frames.total = p.total_frames_estimate
        frames.update(max(0, p.frames_decoded + p.frames_skipped - frames.n))
        frames.set_postfix(stored=p.frames_stored, dup=p.frames_dropped_duplicate, batches=p.batches_published)
        last = p
    return last


def _explain(exc: grpc.RpcError, addr: str, upload: bool) -> str:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return (f"the storage service at {addr} is not reachable ({details}). "
                "Is the stack running? Start it with 'lumenal up' or set LUMENAL_STORAGE_ADDR.")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"not authenticated: {details}. Pass --token or set LUMENAL_TOKEN / LUMENAL_AUTH_SECRET."
    hint = ""
    if code == grpc.StatusCode.INVALID_ARGUMENT and "outside the allowed ingest roots" in details and not upload:
        hint = " (for a video file, --upload sends it over the network instead)"
    return f"{code.name}: {details}{hint}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = from_env(CommonSettings)
    addr = args.addr or settings.storage_addr
    token = args.token or auth.service_token(settings.auth_secret, "cli")
    path = args.path.expanduser().resolve()
    if not path.exists():
        print(f"lumenal ingest: {args.path} does not exist", file=sys.stderr)
        return 2
    if args.upload and not path.is_file():
        print("lumenal ingest: --upload takes a video file; folders are ingested by path", file=sys.stderr)
        return 2
    gt = b""
    if args.ground_truth:
        try:
            gt = args.ground_truth.read_bytes()
        except OSError as exc:
            print(f"lumenal ingest: cannot read {args.ground_truth}: {exc}", file=sys.stderr)
            return 2
    options = storage_pb2.IngestOptions(video_id=args.video_id, filename=path.name, sample_fps=args.fps,
                                        dedup_threshold=args.dedup, batch_size=args.batch_size,
                                        ground_truth_csv_data=gt)
    show = sys.stderr.isatty()
    with grpc_server.channel(addr) as ch:
        stub = storage_pb2_grpc.StorageServiceStub(ch)
        md = auth.metadata(token)
        sent = tqdm(total=path.stat().st_size if args.upload else 0, unit="B", unit_scale=True,
                    desc="upload", disable=not (show and args.upload))
        frames = tqdm(unit="frame", desc=path.name, disable=not show)
        try:
            if args.upload:
                stream = stub.IngestVideo(_upload(path, options, sent), metadata=md)
            else:
                stream = stub.IngestPath(storage_pb2.IngestPathRequest(path=str(path), options=options), metadata=md)
            last = _follow(stream, frames)
        except grpc.RpcError as exc:
            frames.close()
            sent.close()
            print(f"lumenal ingest: {_explain(exc, addr, args.upload)}", file=sys.stderr)
            return 1
        frames.close()
        sent.close()
    for line in last.skipped:
        print(f"skipped {line}", file=sys.stderr)
    note = " (already ingested: nothing new stored)" if last.already_ingested else ""
    print(f"video {last.video_id}: {last.frames_decoded} frames read, {last.frames_stored} stored, "
          f"{last.frames_dropped_duplicate} near-duplicates dropped, {last.frames_unsampled} not sampled, "
          f"{last.frames_skipped} unreadable, {last.batches_published} batches published{note}")
    return 0 if last.done else 1
