"""The one TF Serving gRPC client (works unchanged against tensorflow/serving).

Everything speaks the public ``tensorflow_serving.apis`` protos: Predict with
an explicit ``ModelSpec.version`` or ``version_label``, GetModelStatus,
GetModelMetadata and HandleReloadConfigRequest. UNAVAILABLE is retried with
exponential backoff (a server restarting or a swap in flight must not fail a
caller); other errors become ``lumenal.core.errors`` types carrying the same
status code, so a service can pass them on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from lumenal.core import errors
from lumenal.core.grpc_server import CHANNEL_OPTIONS

log = logging.getLogger(__name__)
R = TypeVar("R")

# ModelVersionStatus.State numbers -> names, as TF Serving reports them.
STATE_NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}

_NP_TO_DT = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
             np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64,
             np.dtype(np.uint8): types_pb2.DT_UINT8, np.dtype(np.bool_): types_pb2.DT_BOOL}
_DT_TO_NP = {v: k for k, v in _NP_TO_DT.items()}
_VAL_FIELDS = {types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
               types_pb2.DT_INT32: "int_val", types_pb2.DT_UINT8: "int_val",
               types_pb2.DT_INT64: "int64_val", types_pb2.DT_BOOL: "bool_val"}
_ERRORS: dict[grpc.StatusCode, type[errors.ServiceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
}


def to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """numpy -> TensorProto using packed ``tensor_content`` (fast, what TF Serving emits)."""
    arr = np.ascontiguousarray(array)
    if arr.dtype not in _NP_TO_DT:
        raise TypeError(f"unsupported dtype {arr.dtype}")
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in arr.shape])
    return tensor_pb2.TensorProto(dtype=_NP_TO_DT[arr.dtype], tensor_shape=shape,
                                  tensor_content=arr.tobytes())


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """TensorProto -> numpy; accepts packed content or the repeated ``*_val`` fields."""
    if proto.dtype not in _DT_TO_NP:
        raise TypeError(f"unsupported tensor dtype {types_pb2.DataType.Name(proto.dtype)}")
    dtype = _DT_TO_NP[proto.dtype]
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if proto.tensor_content:
        arr = np.frombuffer(proto.tensor_content, dtype=dtype)
    else:
        values = getattr(proto, _VAL_FIELDS[proto.dtype])
        arr = np.asarray(values, dtype=dtype)
        count = int(np.prod(shape)) if shape else 1
        if arr.size == 1 and count != 1:
            arr = np.full(count, arr[0], dtype=dtype)  # proto shorthand: one value fills all
    if arr.size != (int(np.prod(shape)) if shape else 1):
        raise ValueError(f"tensor holds {arr.size} values but shape is {shape}")
    return arr.reshape(shape)


@dataclass(frozen=True)
class VersionStatus:
    """One row of GetModelStatus."""

    version: int
    state: str
    error_code: int = 0
    error_message: str = ""


def _model_spec(name: str, version: int | None, version_label: str | None,
                signature: str = "") -> Any:
    req = predict_pb2.PredictRequest()
    spec = req.model_spec
    spec.name = name
    if signature:
        spec.signature_name = signature
    if version is not None and version_label:
        raise ValueError("give either version or version_label, not both")
    if version is not None:
        spec.version.value = int(version)
    elif version_label:
        spec.version_label = version_label
    return spec


class ServingClient:
    """Client for TF Serving's PredictionService and ModelService."""

    def __init__(self, target: str, timeout_s: float = 30.0, retries: int = 6,
                 backoff_s: float = 0.1, max_backoff_s: float = 2.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[..., R], request: Any) -> R:
        """Call with retries on UNAVAILABLE; map final errors to ``lumenal.core.errors``."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn(request, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                code = exc.code()
                if code != grpc.StatusCode.UNAVAILABLE:
                    raise _ERRORS.get(code, errors.ServiceError)(
                        f"{what}: {exc.details()}", code) from exc
                if attempt == self.retries:
                    raise errors.Unavailable(
                        f"{what}: model server {self.target} unavailable after "
                        f"{self.retries + 1} attempts: {exc.details()}") from exc
                log.warning("model server unavailable, retrying",
                            extra={"target": self.target, "attempt": attempt + 1, "delay_s": delay})
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")

    def predict(self, model_name: str, images: np.ndarray, version: int | None = None,
                signature: str = "serving_default",
                version_label: str | None = None) -> dict[str, np.ndarray]:
        """Run ``signature`` on ``images``; returns every output tensor by name.

        Pass an explicit ``version`` (or ``version_label``) whenever the
        result is recorded, so scores always name the model that made them.
        """
        return self.predict_versioned(model_name, images, version, signature, version_label)[1]

    def predict_versioned(self, model_name: str, images: np.ndarray, version: int | None = None,
                          signature: str = "serving_default",
                          version_label: str | None = None) -> tuple[int, dict[str, np.ndarray]]:
        """Like ``predict``, plus the version that answered (from the response ModelSpec)."""
        req = predict_pb2.PredictRequest()
        req.model_spec.CopyFrom(_model_spec(model_name, version, version_label, signature))
        req.inputs["images"].CopyFrom(to_tensor_proto(np.asarray(images)))
        resp = self._call("Predict", self._predict.Predict, req)
        outputs = {key: from_tensor_proto(t) for key, t in resp.outputs.items()}
        return int(resp.model_spec.version.value), outputs

    def version_statuses(self, model_name: str, version: int | None = None) -> list[VersionStatus]:
        """Every version the server knows for ``model_name`` with state and error."""
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.CopyFrom(_model_spec(model_name, version, None))
        resp = self._call("GetModelStatus", self._models.GetModelStatus, req)
        return sorted((VersionStatus(int(s.version), STATE_NAMES.get(s.state, str(s.state)),
                                     int(s.status.error_code), s.status.error_message)
                       for s in resp.model_version_status), key=lambda s: s.version)

    def model_status(self, model_name: str) -> list[tuple[int, str]]:
        """``[(version, state name), ...]`` sorted by version."""
        return [(s.version, s.state) for s in self.version_statuses(model_name)]

    def latest_version(self, model_name: str) -> int | None:
        """Highest AVAILABLE version, or None when none is (or the model is unknown)."""
        try:
            statuses = self.version_statuses(model_name)
        except errors.NotFound:
            return None
        available = [s.version for s in statuses if s.state == "AVAILABLE"]
        return max(available) if available else None

    def metadata(self, model_name: str, version: int | None = None) -> dict[str, Any]:
        """``{"version": int, "signatures": {name: {"inputs": {key: (dtype, shape)}, "outputs": ...}}}``.

        Shapes use -1 for unknown dimensions, as TF Serving reports them.
        """
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.CopyFrom(_model_spec(model_name, version, None))
        req.metadata_field.append("signature_def")
        resp = self._call("GetModelMetadata", self._predict.GetModelMetadata, req)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sig_map)

        def tensors(info: Mapping[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
            return {k: (types_pb2.DataType.Name(v.dtype), tuple(d.size for d in v.tensor_shape.dim))
                    for k, v in info.items()}

        return {"version": int(resp.model_spec.version.value),
                "signatures": {name: {"inputs": tensors(sd.inputs), "outputs": tensors(sd.outputs)}
                               for name, sd in sig_map.signature_def.items()}}

    def reload_config(self, models: Iterable[Mapping[str, Any]]) -> None:
        """HandleReloadConfigRequest with a ``model_config_list``.

        Each mapping: ``name``, ``base_path``, optional ``latest`` (N),
        ``versions`` (specific list), ``all`` (bool), ``version_labels``
        ({label: version}). The server replaces its served set with this list.
        """
        req = model_management_pb2.ReloadConfigRequest()
        for m in models:
            cfg = req.config.model_config_list.config.add()
            cfg.name = m["name"]
            cfg.base_path = str(m["base_path"])
            cfg.model_platform = "tensorflow"
            if m.get("all"):
                cfg.model_version_policy.all.SetInParent()
            elif m.get("versions"):
                cfg.model_version_policy.specific.versions.extend(int(v) for v in m["versions"])
            elif m.get("latest"):
                cfg.model_version_policy.latest.num_versions = int(m["latest"])
            for label, v in (m.get("version_labels") or {}).items():
                cfg.version_labels[label] = int(v)
        resp = self._call("HandleReloadConfigRequest", self._models.HandleReloadConfigRequest, req)
        if resp.status.error_code != 0:
            raise errors.InvalidArgument(f"reload config rejected: {resp.status.error_message}")

