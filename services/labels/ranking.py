"""Candidate ranking from the inference service's TopK, with a circuit breaker.

When inference is down or slow, NextTask must still hand out work: the caller
falls back to ingest order. After a failure the breaker stays open for
``retry_s`` so annotators do not pay a timeout on every task.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
from prometheus_client import Counter

from lumenal.core import auth, grpc_server
from lumenal.v1 import common_pb2, inference_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)

TOPK_FAILURES = Counter("lumenal_labels_topk_failures_total", "failed inference TopK calls", ["code"])


class Ranker:
    def __init__(self, addr: str, secret: str, timeout_s: float = 2.0, retry_s: float = 10.0) -> None:
        self.addr, self.timeout_s, self.retry_s = addr, timeout_s, retry_s
        self._metadata = auth.metadata(auth.service_token(secret, "labels"))
        self._stub: inference_pb2_grpc.InferenceServiceStub | None = None
        self._open_until = 0.0
        self._lock = threading.Lock()

    def _client(self) -> inference_pb2_grpc.InferenceServiceStub:
        with self._lock:
            if self._stub is None:
                self._stub = inference_pb2_grpc.InferenceServiceStub(grpc_server.channel(self.addr))
            return self._stub

    def available(self) -> bool:
        """False while the breaker is open after a failure (skip the call and its preparation)."""
        return time.monotonic() >= self._open_until

    def top(self, k: int, strategy: str, exclude: list[str]) -> list[common_pb2.FrameScore] | None:
        """The k most informative frames, best first; None when inference is unavailable."""
        if time.monotonic() < self._open_until:
            return None
        req = inference_pb2.TopKRequest(k=k, strategy=strategy, exclude_frame_ids=exclude)
        try:
            resp = self._client().TopK(req, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
            TOPK_FAILURES.labels(code.name).inc()
            self._open_until = time.monotonic() + self.retry_s
            log.warning("inference TopK failed; using fallback ordering",
                        extra={"code": code.name, "retry_in_s": self.retry_s})
            return None
        return list(resp.frames)

    def strategies(self) -> list[str] | None:
        """Strategy names inference offers; None when it is unreachable (then any name is accepted)."""
        try:
            resp = self._client().ListStrategies(inference_pb2.ListStrategiesRequest(),
                                                 timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError:
            return None
        return list(resp.strategies)
