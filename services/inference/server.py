"""InferenceService: TopK / GetScore / GetPoolStats / Rescore / ListStrategies over the pool index.

Wiring (see docs/inference.md): a ``Consumer`` in group ``inference`` scores
frames.ingested (replicas share partitions); a ``PoolFeed`` folds every
scoring/labeling/model event into this replica's ``PoolIndex``; ``CatchUp``
re-scores this replica's share of the pool after ``models.published``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lumenal.core import auth, errors, events, grpc_server, logs, topics
from lumenal.core.config import from_env, listen_port
from lumenal.ml import strategies
from lumenal.ml.serving import ServingClient
from lumenal.v1 import events_pb2, inference_pb2, inference_pb2_grpc, storage_pb2_grpc

from .feed import PoolFeed
from .pool import METRICS, PoolIndex
from .scorer import FRAME_ID, CatchUp, ModelTracker, Scorer
from .settings import InferenceSettings

log = logging.getLogger(__name__)


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, settings: InferenceSettings, pool: PoolIndex, tracker: ModelTracker | None = None,
                 catchup: CatchUp | None = None) -> None:
        if settings.default_strategy not in strategies.names():
            raise ValueError(f"LUMENAL_INFERENCE_DEFAULT_STRATEGY: {strategies.get(settings.default_strategy)}")
        strategies.get(settings.cold_start_strategy)
        self.s = settings
        self.pool = pool
        pool.warm([settings.default_strategy], wait=False)  # sorted before the first TopK needs it
        self.tracker = tracker
        self.catchup = catchup

    def _auth(self, context: grpc.ServicerContext, role: str = auth.ANNOTATOR) -> auth.Principal:
        principal = auth.authenticate(context, self.s.auth_secret)
        auth.require(principal, role)
        return principal

    def TopK(self, request: inference_pb2.TopKRequest, context: grpc.ServicerContext) -> inference_pb2.TopKResponse:
        self._auth(context)
        if request.k <= 0 or request.k > self.s.max_k:
            raise errors.InvalidArgument(f"k must be in 1..{self.s.max_k}, got {request.k}")
        name = request.strategy or self.s.default_strategy
        try:
            sel = self.pool.select(request.k, name, self.s.cold_start_strategy,
                                   list(request.exclude_frame_ids), request.seed)
        except strategies.UnknownStrategy as exc:
            raise errors.InvalidArgument(str(exc)) from None
        except strategies.MissingInput as exc:
            raise errors.FailedPrecondition(str(exc)) from None
        return inference_pb2.TopKResponse(frames=self.pool.scores_of_rows(sel.rows, sel.version),
                                          strategy=sel.strategy, model_version=sel.version,
                                          pool_size=sel.pool_size)

    def GetScore(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context)
        if not request.frame_id:
            raise errors.InvalidArgument("frame_id is required")
        score = self.pool.score(request.frame_id)
        if score is None:
            raise errors.NotFound(f"frame {request.frame_id!r} is not in the pool")
        return score

    def GetPoolStats(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context)
        metric = request.metric or "entropy"
        if metric not in METRICS:
            raise errors.InvalidArgument(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
        bins = request.histogram_bins or 20
        if not 1 <= bins <= 1000:
            raise errors.InvalidArgument(f"histogram_bins must be in 1..1000, got {bins}")
        edges, counts = self.pool.histogram(metric, bins)
        c = self.pool.counts()
        return inference_pb2.PoolStats(frames=c["frames"], scored=c["scored"], labeled=c["labeled"],
                                       model_version=c["model_version"], histogram_edges=edges.tolist(),
                                       histogram_counts=counts.tolist(), histogram_metric=metric,
                                       rescore=self._status())

    def _status(self) -> inference_pb2.RescoreStatus:
        p = self.pool.progress()
        return inference_pb2.RescoreStatus(running=p.running, model_version=p.version, done=p.done, total=p.total)

    def Rescore(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context, auth.ADMIN)
        if self.tracker is None or self.catchup is None:
            raise errors.FailedPrecondition("this server does not score frames")
        model = self.tracker.current()
        if model is None:
            raise errors.FailedPrecondition(f"no version of model {self.s.model_name} is being served yet")
        self.pool.force_rescore(model.version)
        self.catchup.force(model.version)
        return self._status()

    def ListStrategies(self, request, context):  # noqa: ANN001, ANN201, N802
        self._auth(context)
        return inference_pb2.ListStrategiesResponse(strategies=strategies.names(),
                                                    default_strategy=self.s.default_strategy)


@dataclass
class Service:
    """Everything one replica runs, so tests can start and stop it in-process."""

    settings: InferenceSettings
    pool: PoolIndex
    server: grpc_server.Server
    consumer: events.Consumer
    feed: PoolFeed
    catchup: CatchUp
    publisher: events.Publisher
    tracker: ModelTracker

    def stop(self) -> None:
        self.server.stop()


def _reachable_storage(target: str) -> bool:
    with grpc_server.channel(target) as ch:
        try:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
            return True
        except grpc.RpcError as exc:
            return exc.code() != grpc.StatusCode.UNAVAILABLE and exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED


def _reachable_serving(probe: ServingClient, model: str) -> bool:
    try:
        probe.model_status(model)
    except errors.NotFound:
        pass  # reachable, just no model yet
    except errors.ServiceError:
        return False
    return True


def _load_pool(settings: InferenceSettings) -> PoolIndex:
    path = settings.snapshot_file()
    if path is not None and path.exists():
        try:
            pool = PoolIndex.load(path, settings.model_name)
            log.info("pool snapshot loaded", extra={"path": str(path), "frames": len(pool)})
            return pool
        except Exception:  # noqa: BLE001 - a bad snapshot only costs a full replay
            log.exception("pool snapshot unreadable; replaying events from the beginning")
    return PoolIndex(settings.model_name)


def _snapshotter(svc: Service, stop: threading.Event) -> None:
    path = svc.settings.snapshot_file()
    while path is not None and not stop.wait(svc.settings.snapshot_interval_s):
        try:
            svc.pool.save(path)
        except OSError:
            log.exception("pool snapshot failed")


def serve(settings: InferenceSettings, port: int | None = None, metrics_port: int | None = None) -> Service:
    """Start one replica (gRPC server, scoring consumer, pool feed, re-scorer, snapshots)."""
    events.ensure_topics(settings.kafka_bootstrap)
    pool = _load_pool(settings)
    publisher = events.Publisher(settings.kafka_bootstrap, client_id="inference")
    serving = ServingClient(settings.modelserver_addr, timeout_s=settings.serving_timeout_s)
    probe_client = ServingClient(settings.modelserver_addr, timeout_s=2.0, retries=0)
    storage_ch = grpc_server.channel(settings.storage_addr)
    tracker = ModelTracker(settings, serving, pool)
    scorer = Scorer(settings, storage_pb2_grpc.StorageServiceStub(storage_ch), serving, tracker, publisher)

    def on_ingested(msg: events_pb2.FramesIngested, rec: events.Record) -> None:
        if msg.aborted or not msg.frames:
            return
        ids = [f.frame_id for f in msg.frames]
        bad = [i for i in ids if not FRAME_ID.match(i)]
        if bad:
            raise events.PoisonMessage(f"malformed frame ids (want '<video_id>:<index:06d>'): {bad[:3]}")
        scorer.score(ids)

    consumer = events.Consumer(settings.kafka_bootstrap, settings.group,
                               {topics.FRAMES_INGESTED: (events_pb2.FramesIngested, on_ingested)},
                               publisher, session_timeout_ms=settings.session_timeout_ms,
                               fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)
    catchup = CatchUp(settings, pool, scorer, lambda: consumer.assigned_partitions(topics.FRAMES_INGESTED))

    def on_model(version: int) -> None:
        tracker.invalidate()
        catchup.wake()

    feed = PoolFeed(settings.kafka_bootstrap, pool, publisher, settings.instance_id(), on_model,
                    fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)

    def probe() -> bool:
        return (consumer.connected and feed.connected and tracker.error is None
                and _reachable_serving(probe_client, settings.model_name)
                and _reachable_storage(settings.storage_addr))

    servicer = InferenceServicer(settings, pool, tracker, catchup)
    server = grpc_server.start(
        "inference", listen_port(settings.inference_addr) if port is None else port,
        [(inference_pb2_grpc.add_InferenceServiceServicer_to_server, servicer, "lumenal.v1.InferenceService")],
        metrics_port=settings.metrics_port if metrics_port is None else metrics_port, probe=probe,
        host=settings.bind_host)
    feed.start()
    consumer.start()
    catchup.start()
    svc = Service(settings, pool, server, consumer, feed, catchup, publisher, tracker)
    stop_snap = threading.Event()
    threading.Thread(target=_snapshotter, args=(svc, stop_snap), daemon=True, name="pool-snapshot").start()

    def shutdown() -> None:
        stop_snap.set()
        consumer.stop()
        catchup.stop()
        feed.stop()
        path = settings.snapshot_file()
        if path is not None:
            pool.save(path)
        publisher.close()
        serving.close()
        probe_client.close()
        storage_ch.close()

    server.on_stop.append(shutdown)
    return svc


def main(argv: list[str] | None = None) -> int:
    settings = from_env(InferenceSettings)
    logs.setup("inference", settings.log_level)
    svc = serve(settings)
    svc.server.wait()
    return 0
