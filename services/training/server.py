"""TrainingService gRPC server: triggers, status, runs, models, rollback."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import grpc
import urllib3
from google.protobuf.timestamp_pb2 import Timestamp
from minio.error import S3Error

from lumenal.core import auth, events, logs, topics
from lumenal.core.config import from_env, listen_port
from lumenal.core.errors import InvalidArgument, Unavailable
from lumenal.core.grpc_server import start
from lumenal.core.objectstore import MODELS_BUCKET, ObjectStore
from lumenal.training.clients import Upstream
from lumenal.training.registry import Registry
from lumenal.training.service import Engine, finite
from lumenal.training.settings import TrainingSettings
from lumenal.v1 import events_pb2, training_pb2, training_pb2_grpc

log = logging.getLogger(__name__)


def _ts(unix: float | None) -> Timestamp | None:
    if not unix:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(float(unix) * 1e9))
    return ts


def run_to_proto(run: dict) -> training_pb2.TrainingRun:
    out = training_pb2.TrainingRun(
        run_id=run["run_id"], state=training_pb2.RunState.Value(f"RUN_STATE_{run.get('state', 'QUEUED')}"),
        reason=run.get("reason", ""), version=int(run.get("version") or 0),
        base_version=int(run.get("base_version") or 0), train_labels=int(run.get("train_labels") or 0),
        val_labels=int(run.get("val_labels") or 0), pseudo_labels=int(run.get("pseudo_labels") or 0),
        metrics=finite(run.get("metrics") or {}), error=run.get("error", ""),
        duration_s=float(run.get("duration_s") or 0.0), epochs=int(run.get("epochs") or 0),
        trigger_label_frame_id=run.get("trigger_label_frame_id", ""), gate=run.get("gate", ""),
        warm_start_from=int(run.get("warm_start_from") or 0),
        compared_with_version=int(run.get("compared_with_version") or 0))
    for field, key in (("started_at", "started_at"), ("finished_at", "finished_at"),
                       ("trigger_label_at", "trigger_label_at")):
        ts = _ts(run.get(key))
        if ts is not None:
            getattr(out, field).CopyFrom(ts)
    return out


def version_to_proto(meta: dict, serving_version: int) -> training_pb2.ModelVersion:
    out = training_pb2.ModelVersion(
        version=int(meta["version"]), metrics=finite(meta.get("metrics") or {}),
        serving=int(meta["version"]) == serving_version, train_labels=int(meta.get("train_labels") or 0),
        run_id=meta.get("run_id", ""), reason=meta.get("reason", ""),
        rollback_of=int(meta.get("rollback_of") or 0))
    ts = _ts(meta.get("created_at"))
    if ts is not None:
        out.created_at.CopyFrom(ts)
    return out


@contextlib.contextmanager
def registry_errors() -> Iterator[None]:
    """S3 trouble is UNAVAILABLE for the caller (retry later), not an internal error."""
    try:
        yield
    except (S3Error, urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unavailable(f"model registry (S3) unavailable: {type(exc).__name__}: {exc}") from exc


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, engine: Engine, secret: str) -> None:
        self.engine = engine
        self.secret = secret

    def _auth(self, context: grpc.ServicerContext, role: str) -> auth.Principal:
        principal = auth.authenticate(context, self.secret)
        auth.require(principal, role)
        return principal

    def TriggerRetrain(self, request, context):  # noqa: ANN001, N802
        who = self._auth(context, auth.ADMIN)
        if len(request.reason) > 500:
            raise InvalidArgument("reason is longer than 500 characters")
        reason = request.reason or f"manual ({who.subject})"
        with registry_errors():
            coalesced, run_id, message = self.engine.trigger(reason)
        log.info("retrain requested", extra={"by": who.subject, "run_id": run_id, "coalesced": coalesced})
        return training_pb2.TriggerRetrainResponse(accepted=True, coalesced=coalesced, run_id=run_id,
                                                   message=message)

    def GetStatus(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.ANNOTATOR)
        st = self.engine.status()
        out = training_pb2.TrainingStatus(pending=st["pending"], serving_version=st["serving_version"],
                                          labels_seen=st["labels_seen"],
                                          labels_since_last_run=st["labels_since_last_run"])
        if st["current"]:
            out.current.CopyFrom(run_to_proto(st["current"]))
        with registry_errors():
            last = self.engine.last_finished()
        if last:
            out.last.CopyFrom(run_to_proto(last))
        return out

    def ListRuns(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.ANNOTATOR)
        if request.limit < 0:
            raise InvalidArgument("limit must be >= 0 (0 = all)")
        with registry_errors():
            runs = self.engine.registry.list_runs(request.limit)
        current = self.engine.status()["current"]
        if current:  # the in-memory record is fresher than the stored one
            runs = [current if r["run_id"] == current["run_id"] else r for r in runs]
        return training_pb2.ListRunsResponse(runs=[run_to_proto(r) for r in runs])

    def ListModels(self, request, context):  # noqa: ANN001, N802
        self._auth(context, auth.ANNOTATOR)
        with registry_errors():
            versions = self.engine.registry.versions()
        serving = self.engine.serving_version or (versions[-1]["version"] if versions else 0)
        return training_pb2.ListModelsResponse(models=[version_to_proto(m, serving) for m in versions],
                                               serving_version=serving)

    def Rollback(self, request, context):  # noqa: ANN001, N802
        who = self._auth(context, auth.ADMIN)
        with registry_errors():
            meta = self.engine.rollback(request.version)
        log.info("rollback", extra={"by": who.subject, "to": request.version, "as": meta["version"]})
        return version_to_proto(meta, meta["version"])


def build_engine(settings: TrainingSettings, publisher: events.Publisher | None) -> Engine:
    from lumenal.ml.serving import ServingClient

    store = ObjectStore.from_settings(settings)
    registry = Registry(store, settings.model_name)
    serving = ServingClient(settings.modelserver_addr, timeout_s=settings.grpc_timeout_s)
    return Engine(settings, registry, Upstream(settings), serving, publisher)


def _wait_for_s3(store: ObjectStore) -> None:
    delay = 0.5
    while True:
        try:
            store.ensure_bucket(MODELS_BUCKET)
            return
        except Exception as exc:  # noqa: BLE001 - S3 not up yet
            log.warning("waiting for S3", extra={"error": str(exc)})
            time.sleep(delay)
            delay = min(delay * 2, 10)


def main() -> None:
    settings = from_env(TrainingSettings)
    logs.setup("training", settings.log_level)
    events.ensure_topics(settings.kafka_bootstrap)
    publisher = events.Publisher(settings.kafka_bootstrap, client_id="training")
    engine = build_engine(settings, publisher)
    _wait_for_s3(engine.registry.store)
    engine.recover()
    consumer = events.Consumer(settings.kafka_bootstrap, "training",
                               {topics.LABELS_RESOLVED: (events_pb2.LabelResolved, engine.on_label_event)},
                               publisher, session_timeout_ms=settings.consumer_session_ms,
                               fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms).start()
    engine.start()

    def probe() -> bool:
        return consumer.connected and engine.registry.store.healthy()

    server = start("training", listen_port(settings.training_addr),
                   [(training_pb2_grpc.add_TrainingServiceServicer_to_server,
                     TrainingServicer(engine, settings.auth_secret), "lumenal.v1.TrainingService")],
                   metrics_port=settings.metrics_port, probe=probe, host=settings.bind_host)
    server.on_stop += [consumer.stop, engine.stop, publisher.close, engine.upstream.close]
    server.wait()
