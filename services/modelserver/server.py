"""TF Serving's gRPC API (PredictionService + ModelService) over the model manager.

Error codes follow tensorflow/serving so a client cannot tell the two apart:
unknown model or version -> NOT_FOUND, unknown version label or bad input
(alias, dtype, shape) -> INVALID_ARGUMENT, unknown signature ->
FAILED_PRECONDITION ("Serving signature key ... not found.").
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from lumenal.core import errors, grpc_server, logs
from lumenal.core.config import listen_port
from lumenal.ml.serving import from_tensor_proto, to_tensor_proto
from lumenal.modelserver.manager import LoadedVersion, ModelConfig, ModelManager
from lumenal.modelserver.settings import ModelServerSettings, load

log = logging.getLogger(__name__)

_STATE_NUM = {name: num for name, num in get_model_status_pb2.ModelVersionStatus.State.items()}
DEFAULT_SIGNATURE = "serving_default"


def _requested(spec: object) -> tuple[str, int | None, str | None]:
    name = spec.name  # type: ignore[attr-defined]
    if not name:
        raise errors.InvalidArgument("Missing ModelSpec name")
    version = spec.version.value if spec.HasField("version") else None  # type: ignore[attr-defined]
    label = spec.version_label or None  # type: ignore[attr-defined]
    return name, version, label


def _inputs(loaded: LoadedVersion, signature: str, request: predict_pb2.PredictRequest) -> dict[str, tf.Tensor]:
    """Validate request inputs against the signature exactly as TF Serving does."""
    expected = loaded.inputs[signature]
    for alias in request.inputs:
        if alias not in expected:
            raise errors.InvalidArgument(
                f"input tensor alias not found in signature: {alias}. Inputs expected to be in the "
                f"set {{{','.join(sorted(expected))}}}.")
    missing = sorted(set(expected) - set(request.inputs))
    if missing:
        raise errors.InvalidArgument(f"Missing input(s) for signature {signature!r}: {missing}")
    out = {}
    for alias, spec in expected.items():
        try:
            arr = from_tensor_proto(request.inputs[alias])
        except (TypeError, ValueError) as exc:
            raise errors.InvalidArgument(f"tensor parsing error: {alias}: {exc}") from exc
        want = spec.dtype.as_numpy_dtype
        if arr.dtype != want:
            raise errors.InvalidArgument(
                f"Expects arg {alias!r} to be {spec.dtype.name} but {arr.dtype.name} is provided")
        dims = spec.shape.as_list()
        if arr.ndim != len(dims) or any(d is not None and d != a for d, a in zip(dims, arr.shape, strict=True)):
            shown = ["?" if d is None else str(d) for d in dims]
            raise errors.InvalidArgument(
                f"input {alias!r} has shape {list(arr.shape)}, signature {signature!r} expects "
                f"[{', '.join(shown)}]")
        out[alias] = tf.constant(arr)
    return out


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def Predict(self, request: predict_pb2.PredictRequest, context: object) -> predict_pb2.PredictResponse:  # noqa: N802
        name, version, label = _requested(request.model_spec)
        with self.manager.acquire(name, version, label) as loaded:
            signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            if signature not in loaded.functions:
                raise errors.FailedPrecondition(f'Serving signature key "{signature}" not found.')
            tensors = _inputs(loaded, signature, request)
            wanted = list(request.output_filter)
            outputs = loaded.signature_defs[signature].outputs
            for key in wanted:
                if key not in outputs:
                    raise errors.InvalidArgument(f"output tensor alias not found in signature: {key}")
            result = loaded.functions[signature](**tensors)
        resp = predict_pb2.PredictResponse()
        resp.model_spec.name = name
        resp.model_spec.version.value = loaded.version
        resp.model_spec.signature_name = signature
        for key, value in result.items():
            if not wanted or key in wanted:
                resp.outputs[key].CopyFrom(to_tensor_proto(np.asarray(value)))
        return resp

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: N802
                         context: object) -> get_model_metadata_pb2.GetModelMetadataResponse:
        name, version, label = _requested(request.model_spec)
        fields = list(request.metadata_field)
        if not fields:
            raise errors.InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
        for f in fields:
            if f != "signature_def":
                raise errors.InvalidArgument(f"Metadata field {f} is not supported")
        loaded = self.manager.resolve(name, version, label)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sd in loaded.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sd)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = name
        resp.model_spec.version.value = loaded.version
        resp.metadata["signature_def"].Pack(sig_map)
        return resp


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, default_latest: int) -> None:
        self.manager = manager
        self.default_latest = default_latest

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,  # noqa: N802
                       context: object) -> get_model_status_pb2.GetModelStatusResponse:
        name, version, label = _requested(request.model_spec)
        if label:
            version = self.manager.resolve(name, None, label).version
        resp = get_model_status_pb2.GetModelStatusResponse()
        for v, st in self.manager.status(name, version):
            row = resp.model_version_status.add()
            row.version = v
            row.state = _STATE_NUM[st.state]
            row.status.error_code = st.error_code
            row.status.error_message = st.error_message
        return resp

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,  # noqa: N802
                                  context: object) -> model_management_pb2.ReloadConfigResponse:
        self.manager.reload(configs_from_proto(request.config, self.default_latest))
        return model_management_pb2.ReloadConfigResponse()


def configs_from_proto(config: model_server_config_pb2.ModelServerConfig,
                       default_latest: int) -> list[ModelConfig]:
    if config.WhichOneof("config") != "model_config_list":
        raise errors.InvalidArgument("only model_config_list is supported (no custom_model_config)")
    return [ModelConfig.from_proto(c, default_latest) for c in config.model_config_list.config]


def manager_from_settings(settings: ModelServerSettings) -> ModelManager:
    """Explicit config file if given (TF Serving's --model_config_file), else discover folders."""
    if settings.model_config_file:
        config = text_format.Parse(Path(settings.model_config_file).read_text(),
                                   model_server_config_pb2.ModelServerConfig())
        configs = configs_from_proto(config, settings.latest_versions)
        return ModelManager(configs, None, settings.latest_versions, settings.drain_timeout_s)
    settings.base_path.mkdir(parents=True, exist_ok=True)
    return ModelManager([], settings.base_path, settings.latest_versions, settings.drain_timeout_s)


def serve(settings: ModelServerSettings, port: int | None = None,
          metrics_port: int | None = None) -> tuple[grpc_server.Server, ModelManager]:
    """Start the manager's poll loop and the gRPC server; returns both (tests use port 0)."""
    manager = manager_from_settings(settings)
    manager.reconcile()  # serve what is on disk before reporting healthy
    manager.start(settings.poll_interval_s)
    server = grpc_server.start(
        "modelserver", listen_port(settings.modelserver_addr) if port is None else port,
        [(prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
          PredictionServicer(manager), "tensorflow.serving.PredictionService"),
         (model_service_pb2_grpc.add_ModelServiceServicer_to_server,
          ModelServicer(manager, settings.latest_versions), "tensorflow.serving.ModelService")],
        metrics_port=settings.metrics_port if metrics_port is None else metrics_port,
        probe=manager.healthy, host=settings.bind_host)
    server.on_stop.append(manager.stop)
    return server, manager


def main(argv: list[str] | None = None) -> int:
    settings = load()
    logs.setup("modelserver", settings.log_level)
    log.info("starting", extra={"base_path": str(settings.base_path),
                                "config_file": settings.model_config_file or None,
                                "poll_interval_s": settings.poll_interval_s})
    server, _ = serve(settings)
    server.wait()
    return 0

