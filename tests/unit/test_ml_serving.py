"""The TF Serving client: tensor conversion, retry with backoff, error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from lumenal.core import errors
from lumenal.ml import serving
from lumenal.stack.processes import free_port


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_])
def test_tensor_round_trip(dtype: type) -> None:
    arr = (np.arange(24).reshape(2, 3, 4) % 3).astype(dtype)
    back = serving.from_tensor_proto(serving.to_tensor_proto(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_repeated_value_fields_are_read() -> None:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=2)
    proto.float_val.extend([1, 2, 3, 4])
    np.testing.assert_array_equal(serving.from_tensor_proto(proto), [[1, 2], [3, 4]])
    proto.ClearField("float_val")
    proto.float_val.append(7)  # one value fills the shape, as in TF
    np.testing.assert_array_equal(serving.from_tensor_proto(proto), np.full((2, 2), 7.0))


def test_inconsistent_tensor_is_rejected() -> None:
    proto = serving.to_tensor_proto(np.zeros((2, 2), np.float32))
    proto.tensor_shape.dim[0].size = 3
    with pytest.raises(ValueError):
        serving.from_tensor_proto(proto)
    with pytest.raises(TypeError):
        serving.to_tensor_proto(np.array(["x"]))


class _Flaky(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers UNAVAILABLE ``failures`` times, then echoes the input; can also fail hard."""

    def __init__(self, failures: int, hard: grpc.StatusCode | None = None) -> None:
        self.failures = failures
        self.hard = hard
        self.calls = 0
        self.requests: list[predict_pb2.PredictRequest] = []

    def Predict(self, request, context):  # noqa: ANN001, N802
        self.calls += 1
        self.requests.append(request)
        if self.hard is not None:
            context.abort(self.hard, "no such version")
        if self.calls <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        resp = predict_pb2.PredictResponse()
        resp.model_spec.CopyFrom(request.model_spec)
        resp.outputs["probabilities"].CopyFrom(request.inputs["images"])
        return resp


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, list[_Flaky]]]:
    holder: list[_Flaky] = []

    class Dispatch(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: ANN001, N802
            return holder[0].Predict(request, context)

    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Dispatch(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield f"127.0.0.1:{port}", holder
    server.stop(0)


def test_unavailable_is_retried_then_succeeds(flaky_server: tuple[str, list[_Flaky]]) -> None:
    target, holder = flaky_server
    holder.append(_Flaky(failures=2))
    x = np.ones((1, 2, 2, 1), np.float32)
    with serving.ServingClient(target, timeout_s=5, retries=3, backoff_s=0.01) as client:
        version, out = client.predict_versioned("m", x, version=7, signature="mc_dropout")
    assert holder[0].calls == 3
    assert version == 7
    np.testing.assert_array_equal(out["probabilities"], x)
    spec = holder[0].requests[-1].model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("m", 7, "mc_dropout")


def test_version_label_is_sent(flaky_server: tuple[str, list[_Flaky]]) -> None:
    target, holder = flaky_server
    holder.append(_Flaky(failures=0))
    with serving.ServingClient(target, timeout_s=5) as client:
        client.predict("m", np.zeros((1, 1), np.float32), version_label="stable")
        with pytest.raises(ValueError):
            client.predict("m", np.zeros((1, 1), np.float32), version=1, version_label="stable")
    spec = holder[0].requests[-1].model_spec
    assert spec.version_label == "stable" and not spec.HasField("version")


def test_persistent_unavailable_raises_unavailable(flaky_server: tuple[str, list[_Flaky]]) -> None:
    target, holder = flaky_server
    holder.append(_Flaky(failures=100))
    with serving.ServingClient(target, timeout_s=5, retries=2, backoff_s=0.01) as client, \
            pytest.raises(errors.Unavailable, match="after 3 attempts"):
        client.predict("m", np.zeros((1, 1), np.float32))
    assert holder[0].calls == 3


def test_other_errors_are_not_retried_and_keep_their_code(flaky_server: tuple[str, list[_Flaky]]) -> None:
    target, holder = flaky_server
    holder.append(_Flaky(failures=0, hard=grpc.StatusCode.NOT_FOUND))
    with serving.ServingClient(target, timeout_s=5, retries=3, backoff_s=0.01) as client, \
            pytest.raises(errors.NotFound, match="no such version") as info:
        client.predict("m", np.zeros((1, 1), np.float32), version=99)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert holder[0].calls == 1


def test_server_down_raises_unavailable() -> None:
    with serving.ServingClient(f"127.0.0.1:{free_port()}", timeout_s=2, retries=2,
                               backoff_s=0.01) as client, pytest.raises(errors.Unavailable):
        client.predict("m", np.zeros((1, 1), np.float32))
