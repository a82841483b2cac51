"""One gRPC client facade for the UI: every service, one bearer token.

The UI never imports service packages; it meets the services over gRPC with the
generated ``lumenal.v1`` stubs, like any other client. Failures become two
exception types the pages can render without knowing gRPC: ``ServiceDown``
(the service is not running or not reachable: show a notice, keep the page up)
and ``ApiError`` (the service answered with an error: show its message).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from lumenal.core.config import CommonSettings
from lumenal.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    labels_pb2,
    labels_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

log = logging.getLogger(__name__)

LABELS, STORAGE, INFERENCE, TRAINING = "labels", "storage", "inference", "training"
_DOWN_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * 1024 * 1024),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024)]
_channels: dict[str, grpc.Channel] = {}
_channels_lock = threading.Lock()


class ServiceDown(Exception):
    """A service did not answer (not started, crashed, or too slow)."""

    def __init__(self, service: str, addr: str, detail: str) -> None:
        super().__init__(f"The {service} service is not reachable at {addr} ({detail}).")
        self.service, self.addr, self.detail = service, addr, detail


class ApiError(Exception):
    """A service answered with an error status; ``message`` is its explanation."""

    def __init__(self, service: str, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message or code.name)
        self.service, self.code, self.message = service, code, message or code.name


def channel(addr: str) -> grpc.Channel:
    """A shared channel per address: channels are costly and thread-safe."""
    with _channels_lock:
        if addr not in _channels:
            _channels[addr] = grpc.insecure_channel(addr, options=_CHANNEL_OPTIONS)
        return _channels[addr]


@dataclass(frozen=True)
class Client:
    """Calls the four services with the logged-in user's token."""

    settings: CommonSettings
    token: str | None = None
    timeout_s: float = 10.0

    def with_token(self, token: str | None) -> Client:
        return Client(self.settings, token, self.timeout_s)

    # -- plumbing ---------------------------------------------------------------
    def addr(self, service: str) -> str:
        return getattr(self.settings, f"{service}_addr")

    def _stub(self, service: str) -> Any:
        stubs = {LABELS: labels_pb2_grpc.LabelsServiceStub, STORAGE: storage_pb2_grpc.StorageServiceStub,
                 INFERENCE: inference_pb2_grpc.InferenceServiceStub,
                 TRAINING: training_pb2_grpc.TrainingServiceStub}
        return stubs[service](channel(self.addr(service)))

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def _error(self, service: str, exc: grpc.RpcError) -> Exception:
        code, details = exc.code(), exc.details() or ""
        log.info("rpc failed", extra={"service": service, "code": code.name, "details": details})
        if code in _DOWN_CODES:
            return ServiceDown(service, self.addr(service), details or code.name)
        return ApiError(service, code, details)

    def call(self, service: str, method: str, request: Any, timeout_s: float | None = None) -> Any:
        """Unary call ``service.method(request)``; raises ServiceDown or ApiError."""
        fn: Callable[..., Any] = getattr(self._stub(service), method)
        try:
            return fn(request, metadata=self._metadata(), timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as exc:
            raise self._error(service, exc) from None

    def stream(self, service: str, method: str, request: Any, timeout_s: float | None = None) -> Iterator[Any]:
        """Server- or bidi-streaming call; errors surface while iterating."""
        fn: Callable[..., Any] = getattr(self._stub(service), method)
        try:
            yield from fn(request, metadata=self._metadata(), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise self._error(service, exc) from None

    # -- labels -----------------------------------------------------------------
    def login(self, username: str, password: str) -> labels_pb2.LoginResponse:
        return self.call(LABELS, "Login", labels_pb2.LoginRequest(username=username, password=password))

    def logout(self) -> None:
        self.call(LABELS, "Logout", labels_pb2.LogoutRequest())

    def whoami(self) -> labels_pb2.Annotator:
        return self.call(LABELS, "WhoAmI", labels_pb2.WhoAmIRequest())

    def get_project(self) -> labels_pb2.Project:
        return self.call(LABELS, "GetProject", labels_pb2.GetProjectRequest())

    def update_project(self, project: labels_pb2.Project) -> labels_pb2.Project:
        return self.call(LABELS, "UpdateProject", project)

    def next_task(self) -> labels_pb2.Task:
        return self.call(LABELS, "NextTask", labels_pb2.NextTaskRequest())

    def submit_label(self, request: labels_pb2.SubmitLabelRequest) -> labels_pb2.SubmitLabelResponse:
        return self.call(LABELS, "SubmitLabel", request)

    def release_task(self, lease_id: str) -> None:
        self.call(LABELS, "ReleaseTask", labels_pb2.ReleaseTaskRequest(lease_id=lease_id))

    def list_adjudications(self, limit: int = 100) -> list[labels_pb2.Adjudication]:
        return list(self.call(LABELS, "ListAdjudications", labels_pb2.ListAdjudicationsRequest(limit=limit)).items)

    def adjudicate(self, frame_id: str, label: str, request_id: str) -> labels_pb2.AdjudicateResponse:
        req = labels_pb2.AdjudicateRequest(frame_id=frame_id, label=label, request_id=request_id)
        return self.call(LABELS, "Adjudicate", req)

    def agreement(self) -> labels_pb2.Agreement:
        return self.call(LABELS, "GetAgreement", labels_pb2.GetAgreementRequest())

    def stats(self) -> labels_pb2.LabelStats:
        return self.call(LABELS, "GetStats", labels_pb2.GetStatsRequest())

    def list_annotators(self) -> list[labels_pb2.Annotator]:
        return list(self.call(LABELS, "ListAnnotators", labels_pb2.ListAnnotatorsRequest()).annotators)

    def create_annotator(self, username: str, password: str, display_name: str,
                         role: int) -> labels_pb2.Annotator:
        req = labels_pb2.CreateAnnotatorRequest(username=username, password=password,
                                                display_name=display_name, role=role)
        return self.call(LABELS, "CreateAnnotator", req)

    def update_annotator(self, username: str, *, role: int, active: bool, display_name: str,
                         password: str = "") -> labels_pb2.Annotator:
        req = labels_pb2.UpdateAnnotatorRequest(username=username, role=role, active=active,
                                                display_name=display_name, password=password)
        return self.call(LABELS, "UpdateAnnotator", req)

    def export(self, fmt: int) -> labels_pb2.ExportResponse:
        return self.call(LABELS, "Export", labels_pb2.ExportRequest(format=fmt), timeout_s=60)

    # -- storage ----------------------------------------------------------------
    def get_frame(self, frame_id: str) -> storage_pb2.Frame:
        return self.call(STORAGE, "GetFrame", storage_pb2.GetFrameRequest(frame_id=frame_id))

    def list_videos(self) -> list[storage_pb2.VideoInfo]:
        return list(self.call(STORAGE, "ListVideos", storage_pb2.ListVideosRequest()).videos)

    def ingest_video(self, data: Iterable[bytes], options: storage_pb2.IngestOptions,
                     timeout_s: float = 3600) -> Iterator[storage_pb2.IngestProgress]:
        """Stream ``data`` chunks to storage; yields progress as it is reported."""
        def requests() -> Iterator[storage_pb2.IngestVideoRequest]:
            yield storage_pb2.IngestVideoRequest(options=options)
            for chunk in data:
                yield storage_pb2.IngestVideoRequest(chunk=chunk)
        return self.stream(STORAGE, "IngestVideo", requests(), timeout_s=timeout_s)

    # -- inference --------------------------------------------------------------
    def pool_stats(self, metric: str = "", bins: int = 30) -> inference_pb2.PoolStats:
        return self.call(INFERENCE, "GetPoolStats",
                         inference_pb2.GetPoolStatsRequest(histogram_bins=bins, metric=metric))

    def strategies(self) -> inference_pb2.ListStrategiesResponse:
        return self.call(INFERENCE, "ListStrategies", inference_pb2.ListStrategiesRequest())

    # -- training ---------------------------------------------------------------
    def training_status(self) -> training_pb2.TrainingStatus:
        return self.call(TRAINING, "GetStatus", training_pb2.GetStatusRequest())

    def list_models(self) -> training_pb2.ListModelsResponse:
        return self.call(TRAINING, "ListModels", training_pb2.ListModelsRequest())

    def list_runs(self, limit: int = 50) -> list[training_pb2.TrainingRun]:
        return list(self.call(TRAINING, "ListRuns", training_pb2.ListRunsRequest(limit=limit)).runs)

    def trigger_retrain(self, reason: str) -> training_pb2.TriggerRetrainResponse:
        return self.call(TRAINING, "TriggerRetrain", training_pb2.TriggerRetrainRequest(reason=reason))

    def rollback(self, version: int) -> training_pb2.ModelVersion:
        return self.call(TRAINING, "Rollback", training_pb2.RollbackRequest(version=version), timeout_s=120)


def chunks(read: Callable[[int], bytes], size: int) -> Iterator[bytes]:
    """``read(size)`` blocks until empty: a file streams without being copied whole."""
    while block := read(size):
        yield block

