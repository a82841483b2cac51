"""What training reads from other services, over gRPC only.

Labels come from the labels service (``ListResolved``, the source of truth
after a restart), frames from storage (``GetFrames``). Calls carry the
training service's own service token.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from lumenal.core import auth
from lumenal.core.errors import Unavailable
from lumenal.core.grpc_server import channel
from lumenal.training.settings import TrainingSettings
from lumenal.v1 import common_pb2, labels_pb2, labels_pb2_grpc, storage_pb2, storage_pb2_grpc

PAGE = 1000
FRAMES_PER_CALL = 128


@dataclass(frozen=True)
class Label:
    frame_id: str
    label: str
    sequence: int


def _unavailable(what: str, exc: grpc.RpcError) -> Exception:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(f"{what} unavailable: {details}")
    return RuntimeError(f"{what} failed: {code.name if code else '?'}: {details}")


class Upstream:
    """Clients of the labels and storage services."""

    def __init__(self, settings: TrainingSettings) -> None:
        self.timeout = settings.grpc_timeout_s
        self.md = auth.metadata(auth.service_token(settings.auth_secret, "training"))
        self._labels_ch = channel(settings.labels_addr)
        self._storage_ch = channel(settings.storage_addr)
        self.labels = labels_pb2_grpc.LabelsServiceStub(self._labels_ch)
        self.storage = storage_pb2_grpc.StorageServiceStub(self._storage_ch)

    def close(self) -> None:
        self._labels_ch.close()
        self._storage_ch.close()

    def resolved_after(self, after_sequence: int = 0) -> list[Label]:
        """Every resolved label with a larger sequence; a frame resolved twice keeps its newest label."""
        latest: dict[str, Label] = {}
        cursor = after_sequence
        while True:
            try:
                resp = self.labels.ListResolved(labels_pb2.ListResolvedRequest(after_sequence=cursor, limit=PAGE),
                                                metadata=self.md, timeout=self.timeout)
            except grpc.RpcError as exc:
                raise _unavailable("labels ListResolved", exc) from None
            for r in resp.labels:
                old = latest.get(r.frame_id)
                if old is None or r.sequence >= old.sequence:
                    latest[r.frame_id] = Label(r.frame_id, r.label, r.sequence)
            if len(resp.labels) < PAGE:
                break
            cursor = max(cursor, max(r.sequence for r in resp.labels))
        return sorted(latest.values(), key=lambda lab: lab.sequence)

    def class_names(self) -> tuple[str, ...]:
        try:
            project = self.labels.GetProject(labels_pb2.GetProjectRequest(), metadata=self.md, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _unavailable("labels GetProject", exc) from None
        return tuple(project.class_names)

    def frames(self, frame_ids: list[str]) -> Iterator[tuple[str, bytes]]:
        """``(frame_id, encoded image)`` for each id storage has, in batches."""
        for start in range(0, len(frame_ids), FRAMES_PER_CALL):
            req = storage_pb2.GetFramesRequest(frame_ids=frame_ids[start:start + FRAMES_PER_CALL])
            try:
                for frame in self.storage.GetFrames(req, metadata=self.md, timeout=self.timeout):
                    yield frame.meta.frame_id, frame.image
            except grpc.RpcError as exc:
                raise _unavailable("storage GetFrames", exc) from None

    def sample_frame_ids(self, exclude: set[str], limit: int, seed: int) -> list[str]:
        """Up to ``limit`` random stored frames not in ``exclude`` (CEAL's unlabelled candidates)."""
        ids: list[str] = []
        token = ""
        while True:
            req = storage_pb2.ListFramesRequest(page=common_pb2.Page(page_size=PAGE, page_token=token))
            try:
                resp = self.storage.ListFrames(req, metadata=self.md, timeout=self.timeout)
            except grpc.RpcError as exc:
                raise _unavailable("storage ListFrames", exc) from None
            ids.extend(f.frame_id for f in resp.frames if f.frame_id not in exclude)
            token = resp.next_page_token
            if not token:
                break
        random.Random(seed).shuffle(ids)
        return ids[:limit]
