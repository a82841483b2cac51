"""The labels service process with a real tansu broker: frames.ingested in, labels.* out, outbox recovery,
and TopK ranking from an inference stand-in (the real inference service has its own tests)."""

from __future__ import annotations

import signal
import sys
import time

import grpc
import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer

from lumenal.core import auth, events, grpc_server, topics
from lumenal.labels import models as m
from lumenal.stack.processes import ManagedProcess, free_port, wait_for
from lumenal.v1 import (
    common_pb2,
    events_pb2,
    inference_pb2,
    inference_pb2_grpc,
    labels_pb2,
    labels_pb2_grpc,
)

pytestmark = pytest.mark.integration

SECRET = "test-secret"  # what isolated_infra.env() gives service processes


class RankingInference(inference_pb2_grpc.InferenceServiceServicer):
    """Answers TopK with a fixed ranking; records who asked and what was excluded."""

    def __init__(self, order: list[str]) -> None:
        self.order, self.requests = order, []

    def TopK(self, request, context):  # noqa: ANN001, ANN201, N802
        principal = auth.authenticate(context, SECRET)
        self.requests.append((principal.role, request.strategy, list(request.exclude_frame_ids)))
        frames = [common_pb2.FrameScore(frame_id=f, entropy=0.9 - i / 10, probabilities=[0.5, 0.5])
                  for i, f in enumerate(self.order) if f not in request.exclude_frame_ids]
        return inference_pb2.TopKResponse(frames=frames[:request.k], strategy="entropy", model_version=1)


def labels_process(tmp_path, env: dict[str, str], publish: bool) -> tuple[ManagedProcess, str]:  # noqa: ANN001
    port = free_port()
    target = f"127.0.0.1:{port}"
    proc = ManagedProcess("labels", [sys.executable, "-m", "lumenal.labels"], tmp_path / "labels.log",
                          env={**env, "LUMENAL_LABELS_ADDR": target, "LUMENAL_LABELS_METRICS_PORT": str(free_port()),
                               "LUMENAL_LABELS_PUBLISH_EVENTS": str(publish).lower()},
                          stop_signal=signal.SIGKILL)  # a crash, not a graceful stop
    proc.ready = lambda: grpc_server.wait_healthy(target, timeout_s=1) is None
    return proc.start().wait_ready(60), target


def read_events(bootstrap: str, group: str, frame_ids: set[str], want_submitted: int, want_resolved: int):  # noqa: ANN201
    consumer = KafkaConsumer(topics.LABELS_SUBMITTED, topics.LABELS_RESOLVED, bootstrap_servers=bootstrap,
                             group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=6000, heartbeat_interval_ms=1000)
    submitted: list[events_pb2.LabelSubmitted] = []
    resolved: list[events_pb2.LabelResolved] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    cls = events_pb2.LabelSubmitted if rec.topic == topics.LABELS_SUBMITTED else events_pb2.LabelResolved
                    msg = cls.FromString(rec.value)
                    if msg.frame_id in frame_ids:
                        assert rec.key.decode() == msg.frame_id
                        (submitted if cls is events_pb2.LabelSubmitted else resolved).append(msg)
            if len({e.label_id for e in submitted}) >= want_submitted and \
                    len({e.sequence for e in resolved}) >= want_resolved:
                break
    finally:
        consumer.close()
    return submitted, resolved


def test_frames_in_labels_out_with_ranking_and_outbox_recovery(isolated_infra, tmp_path, unique):
    bootstrap = isolated_infra.kafka_bootstrap
    frame_ids = [f"ev{unique}:{i:06d}" for i in range(4)]
    ranking = RankingInference(list(reversed(frame_ids)))
    inference = grpc_server.start("fake-inference", 0, [(inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                                                         ranking, "lumenal.v1.InferenceService")], metrics_port=-1)
    db_url = f"sqlite:///{tmp_path}/labels.db"
    env = {**isolated_infra.env(), "LUMENAL_DB_URL": db_url, "LUMENAL_INFERENCE_ADDR": f"127.0.0.1:{inference.port}",
           "LUMENAL_LABELS_CONSUMER_SESSION_MS": "6000", "LUMENAL_LABELS_ADMIN_PASSWORD": "root-password",
           "LUMENAL_LABELS_CLASS_NAMES": "a,b", "LUMENAL_LABELS_OVERLAP_FRACTION": "0",
           "LUMENAL_LABELS_STRATEGY": "entropy"}
    events.ensure_topics(bootstrap)
    publisher = events.Publisher(bootstrap)
    publisher.publish_sync(topics.FRAMES_INGESTED, events_pb2.FramesIngested(
        video_id=f"ev{unique}", frames=[common_pb2.FrameMeta(frame_id=f, video_id=f"ev{unique}", frame_index=i)
                                        for i, f in enumerate(frame_ids)], last_batch=True), frame_ids[0])
    publisher.publish_sync(topics.FRAMES_INGESTED, events_pb2.FramesIngested(  # redelivery: must be harmless
        video_id=f"ev{unique}", frames=[common_pb2.FrameMeta(frame_id=frame_ids[0])]), frame_ids[0])
    publisher.close()

    # 1) Publishing disabled, then the process is killed: the events wait in the outbox.
    proc, target = labels_process(tmp_path, env, publish=False)
    try:
        with grpc.insecure_channel(target) as ch:
            stub = labels_pb2_grpc.LabelsServiceStub(ch)
            root = auth.metadata(stub.Login(labels_pb2.LoginRequest(username="admin", password="root-password")).token)

            def next_task() -> labels_pb2.Task | None:
                try:
                    return stub.NextTask(labels_pb2.NextTaskRequest(), metadata=root)
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
                    return None
            wait_for(lambda: next_task() is not None, 60, "frames consumed from frames.ingested", proc)
            seen = []
            for i in range(4):
                task = next_task()
                seen.append((task.frame_id, task.source))
                assert task.score.entropy > 0  # predictions shown (project does not hide them)
                stub.SubmitLabel(labels_pb2.SubmitLabelRequest(
                    request_id=f"r{i}", lease_id=task.lease_id, frame_id=task.frame_id,
                    kind=common_pb2.LABEL_KIND_CLASS, label="ab"[i % 2]), metadata=root)
    finally:
        proc.stop()
    assert seen == [(f, "inference") for f in reversed(frame_ids)]
    assert {(role, strategy) for role, strategy, _ in ranking.requests} == {(auth.SERVICE, "entropy")}
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(m.Outbox)).scalar() == 8
        assert conn.execute(sa.select(sa.func.count()).select_from(m.Frame)
                            .where(m.Frame.frame_id.in_(frame_ids))).scalar() == 4

    # 2) Restart with publishing: the outbox drains to Kafka; nothing was lost.
    proc, target = labels_process(tmp_path, env, publish=True)
    try:
        submitted, resolved = read_events(bootstrap, f"test-{unique}", set(frame_ids), 4, 4)
        wait_for(lambda: _outbox_empty(engine), 30, "outbox drained", proc)
    finally:
        proc.stop()
        inference.stop(1)
        engine.dispose()
    by_frame = {e.frame_id: e for e in submitted}
    assert len({e.label_id for e in submitted}) == 4 and set(by_frame) == set(frame_ids)
    assert all(e.annotator == "admin" and e.kind == common_pb2.LABEL_KIND_CLASS for e in submitted)
    assert {e.frame_id: e.label for e in resolved} == {f: "ab"[i % 2] for i, f in enumerate(reversed(frame_ids))}
    assert sorted({e.sequence for e in resolved}) == [1, 2, 3, 4]
    assert all(e.resolved_by == "single" and e.votes == 1 for e in resolved)


def _outbox_empty(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(m.Outbox)).scalar() == 0
