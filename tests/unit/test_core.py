"""Unit tests of the shared core: settings, tokens, error mapping."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from lumenal.core import auth, grpc_server
from lumenal.core.config import CommonSettings, env, env_vars, from_env
from lumenal.core.errors import NotFound, PermissionDenied, Unauthenticated
from lumenal.v1 import storage_pb2, storage_pb2_grpc


@dataclasses.dataclass(frozen=True)
class _S(CommonSettings):
    port: int = env("X_PORT", 1)
    ratio: float = env("X_RATIO", 0.5)
    on: bool = env("X_ON", False)


def test_settings_from_env_and_overrides():
    s = from_env(_S, environ={"X_PORT": "7", "X_RATIO": "0.25", "X_ON": "yes", "LUMENAL_S3_ENDPOINT": "h:1"})
    assert (s.port, s.ratio, s.on, s.s3_endpoint) == (7, 0.25, True, "h:1")
    assert from_env(_S, environ={"X_PORT": "7"}, port=9).port == 9
    assert env_vars(_S)["X_PORT"] == 1 and "LUMENAL_KAFKA_BOOTSTRAP" in env_vars(_S)


def test_tokens_verify_expire_and_reject_forgery():
    token, p = auth.issue_token("s3cret", "ana", auth.REVIEWER, 60)
    assert auth.verify_token("s3cret", token).subject == "ana"
    with pytest.raises(Unauthenticated, match="signature"):
        auth.verify_token("other", token)
    body, sig = token.split(".")
    with pytest.raises(Unauthenticated, match="signature"):
        auth.verify_token("s3cret", body + "x." + sig)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.verify_token("s3cret", token, now=p.expires_at + 1)
    with pytest.raises(Unauthenticated, match="malformed"):
        auth.verify_token("s3cret", "garbage")
    auth.require(p, auth.ANNOTATOR)
    with pytest.raises(PermissionDenied):
        auth.require(p, auth.ADMIN)


class _Storage(storage_pb2_grpc.StorageServiceServicer):
    def GetFrame(self, request, context):  # noqa: N802
        if request.frame_id == "boom":
            raise RuntimeError("kaput")
        raise NotFound(f"unknown frame {request.frame_id!r}")


def test_server_maps_service_errors_and_serves_health():
    srv = grpc_server.start("t", 0, [(storage_pb2_grpc.add_StorageServiceServicer_to_server, _Storage(),
                                      "lumenal.v1.StorageService")], metrics_port=0)
    try:
        target = f"127.0.0.1:{srv.port}"
        grpc_server.wait_healthy(target, 10)
        stub = storage_pb2_grpc.StorageServiceStub(grpc_server.channel(target))
        with pytest.raises(grpc.RpcError) as e:
            stub.GetFrame(storage_pb2.GetFrameRequest(frame_id="x"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "unknown frame 'x'" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.GetFrame(storage_pb2.GetFrameRequest(frame_id="boom"))
        assert e.value.code() == grpc.StatusCode.INTERNAL and "kaput" in e.value.details()
    finally:
        srv.stop(1)
