"""InferenceService RPCs over an in-memory pool: auth, validation, error statuses."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from lumenal.core import auth, grpc_server
from lumenal.core.config import from_env
from lumenal.inference.pool import PoolIndex
from lumenal.inference.server import InferenceServicer
from lumenal.inference.settings import InferenceSettings
from lumenal.v1 import common_pb2, inference_pb2, inference_pb2_grpc

SECRET = "unit-secret"


@pytest.fixture
def stub() -> Iterator[inference_pb2_grpc.InferenceServiceStub]:
    settings = from_env(InferenceSettings, environ={}, auth_secret=SECRET, model_name="m")
    pool = PoolIndex("m")
    pool.add_frames([f"v:{i:06d}" for i in range(20)], 0)
    pool.set_target(1)
    rng = np.random.default_rng(0)
    pool.apply_scores(1, [common_pb2.FrameScore(
        frame_id=f"v:{i:06d}", model_name="m", model_version=1, probabilities=[p, 1 - p],
        least_confidence=1 - max(p, 1 - p), margin=abs(2 * p - 1), entropy=0.1 + p,
        embedding=rng.normal(size=4).tolist()) for i, p in enumerate(np.linspace(0.5, 0.99, 20))])
    srv = grpc_server.start("inference-unit", 0, [(inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                                                   InferenceServicer(settings, pool), "lumenal.v1.InferenceService")],
                            metrics_port=-1)
    ch = grpc_server.channel(f"127.0.0.1:{srv.port}")
    yield inference_pb2_grpc.InferenceServiceStub(ch)
    ch.close()
    srv.stop(0)


def md(role: str = auth.ANNOTATOR) -> tuple:
    return auth.metadata(auth.issue_token(SECRET, "u", role, 60)[0])


def code_of(fn, *args, **kw) -> grpc.StatusCode:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as exc:
        fn(*args, **kw)
    return exc.value.code()


def test_topk_default_strategy_and_exclusions(stub) -> None:  # noqa: ANN001
    resp = stub.TopK(inference_pb2.TopKRequest(k=5, exclude_frame_ids=["v:000000"]), metadata=md())
    assert resp.strategy == "diverse_margin" and resp.model_version == 1 and resp.pool_size == 19
    assert len(resp.frames) == 5 and "v:000000" not in {f.frame_id for f in resp.frames}
    lc = stub.TopK(inference_pb2.TopKRequest(k=3, strategy="least_confidence"), metadata=md())
    assert [f.frame_id for f in lc.frames] == ["v:000000", "v:000001", "v:000002"]
    assert not lc.frames[0].embedding and len(lc.frames[0].probabilities) == 2


def test_errors_have_clear_statuses(stub) -> None:  # noqa: ANN001
    assert code_of(stub.TopK, inference_pb2.TopKRequest(k=3)) == grpc.StatusCode.UNAUTHENTICATED
    bad_token = (("authorization", "Bearer forged.token"),)
    assert code_of(stub.TopK, inference_pb2.TopKRequest(k=3), metadata=bad_token) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(stub.TopK, inference_pb2.TopKRequest(k=3, strategy="nope"),
                   metadata=md()) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.TopK, inference_pb2.TopKRequest(k=0), metadata=md()) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.TopK, inference_pb2.TopKRequest(k=5000), metadata=md()) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.TopK, inference_pb2.TopKRequest(k=3, strategy="bald"),
                   metadata=md()) == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(stub.GetScore, inference_pb2.GetScoreRequest(frame_id="x:000001"),
                   metadata=md()) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.GetPoolStats, inference_pb2.GetPoolStatsRequest(metric="iq"),
                   metadata=md()) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.Rescore, inference_pb2.RescoreRequest(), metadata=md()) == grpc.StatusCode.PERMISSION_DENIED
    # an admin may ask, but this servicer has no scorer
    assert code_of(stub.Rescore, inference_pb2.RescoreRequest(),
                   metadata=md(auth.ADMIN)) == grpc.StatusCode.FAILED_PRECONDITION


def test_score_stats_and_strategies(stub) -> None:  # noqa: ANN001
    s = stub.GetScore(inference_pb2.GetScoreRequest(frame_id="v:000003"), metadata=md())
    assert s.model_version == 1 and s.model_name == "m"
    stats = stub.GetPoolStats(inference_pb2.GetPoolStatsRequest(histogram_bins=4), metadata=md())
    assert stats.frames == 20 and stats.scored == 20 and sum(stats.histogram_counts) == 20
    assert stats.histogram_metric == "entropy" and len(stats.histogram_edges) == 5
    names = stub.ListStrategies(inference_pb2.ListStrategiesRequest(), metadata=md())
    assert "badge" in names.strategies and names.default_strategy == "diverse_margin"
