"""The labels service over real gRPC on SQLite and PostgreSQL: bad input, workflow, 20 annotators."""

from __future__ import annotations

import csv
import io
import json
import math
import time
import uuid

import grpc
import pytest

from lumenal.core import auth
from lumenal.core.config import from_env
from lumenal.labels import loadtest
from lumenal.labels.server import serve
from lumenal.labels.settings import LabelsSettings
from lumenal.stack.processes import free_port
from lumenal.v1 import common_pb2, labels_pb2, labels_pb2_grpc

pytestmark = pytest.mark.integration

SECRET = "test-secret"
CLASS, SKIP = common_pb2.LABEL_KIND_CLASS, common_pb2.LABEL_KIND_SKIP
Code = grpc.StatusCode


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/labels.db"
    return request.getfixturevalue("pg_url")


class Api:
    """A gRPC client of the in-process server plus the app for white-box checks."""

    def __init__(self, target: str, app) -> None:  # noqa: ANN001
        self.channel = grpc.insecure_channel(target)
        self.stub = labels_pb2_grpc.LabelsServiceStub(self.channel)
        self.app = app

    def login(self, username: str, password: str = "password-1") -> tuple[tuple[str, str], ...]:
        return auth.metadata(self.stub.Login(labels_pb2.LoginRequest(username=username, password=password)).token)

    def user(self, admin_md, username: str, role: int = labels_pb2.ROLE_ANNOTATOR):  # noqa: ANN001, ANN201
        self.stub.CreateAnnotator(labels_pb2.CreateAnnotatorRequest(username=username, password="password-1",
                                                                    role=role), metadata=admin_md)
        return self.login(username)

    def submit(self, md, task, label="a", kind=CLASS, request_id=None):  # noqa: ANN001, ANN201
        return self.stub.SubmitLabel(labels_pb2.SubmitLabelRequest(
            request_id=uuid.uuid4().hex if request_id is None else request_id, lease_id=task.lease_id, frame_id=task.frame_id,
            kind=kind, label=label), metadata=md)


@pytest.fixture
def api(db_url):
    settings = from_env(LabelsSettings, environ={}, db_url=db_url, auth_secret=SECRET,
                        admin_user="root", admin_password="root-password", class_names="a,b,c",
                        overlap_fraction=0.0, publish_events=False, consume_frames=False,
                        inference_addr=f"127.0.0.1:{free_port()}", inference_retry_s=60)
    server, app = serve(settings, port=0, metrics_port=-1)
    app.tasks.add_frames(common_pb2.FrameMeta(frame_id=f"vid:{i:06d}", video_id="vid", frame_index=i,
                                              object_key=f"frames/vid/{i:06d}.png", width=64, height=64)
                         for i in range(6))
    client = Api(f"127.0.0.1:{server.port}", app)
    yield client
    client.channel.close()
    server.stop(1)


def code_of(fn) -> tuple[grpc.StatusCode, str]:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code(), info.value.details()


def test_auth_errors(api):
    s = api.stub
    assert code_of(lambda: s.NextTask(labels_pb2.NextTaskRequest()))[0] == Code.UNAUTHENTICATED
    assert code_of(lambda: s.Login(labels_pb2.LoginRequest(username="root", password="nope")))[0] == \
        Code.UNAUTHENTICATED
    forged = auth.issue_token("not-the-secret", "root", auth.ADMIN, 600)[0]
    code, msg = code_of(lambda: s.GetStats(labels_pb2.GetStatsRequest(), metadata=auth.metadata(forged)))
    assert (code, "signature" in msg) == (Code.UNAUTHENTICATED, True)
    expired = auth.issue_token(SECRET, "root", auth.ADMIN, -1)[0]
    code, msg = code_of(lambda: s.GetStats(labels_pb2.GetStatsRequest(), metadata=auth.metadata(expired)))
    assert (code, "expired" in msg) == (Code.UNAUTHENTICATED, True)
    never_logged_in = auth.issue_token(SECRET, "root", auth.ADMIN, 600)[0]  # valid signature, no session
    assert code_of(lambda: s.GetStats(labels_pb2.GetStatsRequest(),
                                      metadata=auth.metadata(never_logged_in)))[0] == Code.UNAUTHENTICATED
    root = api.login("root", "root-password")
    assert s.WhoAmI(labels_pb2.WhoAmIRequest(), metadata=root).role == labels_pb2.ROLE_ADMIN
    s.Logout(labels_pb2.LogoutRequest(), metadata=root)
    code, msg = code_of(lambda: s.WhoAmI(labels_pb2.WhoAmIRequest(), metadata=root))
    assert (code, "revoked" in msg) == (Code.UNAUTHENTICATED, True)


def test_roles_are_enforced_by_the_server(api):
    s = api.stub
    root = api.login("root", "root-password")
    ann = api.user(root, "ann")
    rev = api.user(root, "rev", labels_pb2.ROLE_REVIEWER)
    denied = [
        lambda md: s.ListAdjudications(labels_pb2.ListAdjudicationsRequest(), metadata=md),
        lambda md: s.Adjudicate(labels_pb2.AdjudicateRequest(frame_id="vid:000000", label="a"), metadata=md),
        lambda md: s.Export(labels_pb2.ExportRequest(format=labels_pb2.EXPORT_FORMAT_CSV), metadata=md),
        lambda md: s.ListResolved(labels_pb2.ListResolvedRequest(), metadata=md),
    ]
    admin_only = [
        lambda md: s.UpdateProject(s.GetProject(labels_pb2.GetProjectRequest(), metadata=md), metadata=md),
        lambda md: s.CreateAnnotator(labels_pb2.CreateAnnotatorRequest(username="x", password="password-1"),
                                     metadata=md),
        lambda md: s.ListAnnotators(labels_pb2.ListAnnotatorsRequest(), metadata=md),
    ]
    for call in denied + admin_only:
        assert code_of(lambda call=call: call(ann))[0] == Code.PERMISSION_DENIED
    for call in admin_only:
        assert code_of(lambda call=call: call(rev))[0] == Code.PERMISSION_DENIED
    s.ListAdjudications(labels_pb2.ListAdjudicationsRequest(), metadata=rev)
    # Promotion takes effect on the existing token (the server checks the current role).
    s.UpdateAnnotator(labels_pb2.UpdateAnnotatorRequest(username="ann", role=labels_pb2.ROLE_REVIEWER,
                                                        active=True), metadata=root)
    s.ListAdjudications(labels_pb2.ListAdjudicationsRequest(), metadata=ann)
    s.UpdateAnnotator(labels_pb2.UpdateAnnotatorRequest(username="ann", active=False), metadata=root)
    assert code_of(lambda: s.GetStats(labels_pb2.GetStatsRequest(), metadata=ann))[0] == Code.UNAUTHENTICATED
    svc = auth.metadata(auth.service_token(SECRET, "training"))
    assert s.ListResolved(labels_pb2.ListResolvedRequest(), metadata=svc).labels == []


def test_bad_label_input_is_rejected_and_nothing_is_lost(api):
    s = api.stub
    root = api.login("root", "root-password")
    ann, other = api.user(root, "ann"), api.user(root, "other")
    task = s.NextTask(labels_pb2.NextTaskRequest(), metadata=ann)
    assert (task.source, task.frame.object_key) == ("fallback", "frames/vid/000000.png")
    assert s.NextTask(labels_pb2.NextTaskRequest(), metadata=ann).lease_id == task.lease_id
    bad_frame = labels_pb2.Task(lease_id=task.lease_id, frame_id="vid:999999")
    code, msg = code_of(lambda: api.submit(ann, bad_frame))
    assert (code, "unknown frame" in msg) == (Code.NOT_FOUND, True)
    code, msg = code_of(lambda: api.submit(ann, task, label="zebra"))
    assert (code, "class set" in msg) == (Code.INVALID_ARGUMENT, True)
    assert code_of(lambda: api.submit(ann, task, request_id=""))[0] == Code.INVALID_ARGUMENT
    assert code_of(lambda: api.submit(other, task))[0] == Code.PERMISSION_DENIED
    first = api.submit(ann, task, label="b", request_id="req-1")
    dup = api.submit(ann, task, label="b", request_id="req-1")
    assert (first.duplicate, dup.duplicate, dup.label_id) == (False, True, first.label_id)
    assert code_of(lambda: api.submit(ann, task, label="b", request_id="req-2"))[0] == Code.FAILED_PRECONDITION
    # An expired lease: the clock moves past the TTL.
    late = s.NextTask(labels_pb2.NextTaskRequest(), metadata=ann)
    code, msg = code_of(lambda: api.submit(ann, late, label="b", request_id="req-1"))  # reused on a live lease
    assert (code, "different answer" in msg) == (Code.INVALID_ARGUMENT, True)
    real_clock = api.app.tasks.clock
    api.app.tasks.clock = lambda: real_clock() + 10_000
    code, msg = code_of(lambda: api.submit(ann, late))
    assert (code, "expired" in msg) == (Code.FAILED_PRECONDITION, True)
    again = s.NextTask(labels_pb2.NextTaskRequest(), metadata=other)
    assert again.frame_id == late.frame_id  # the expired frame went back to the pool
    api.app.tasks.clock = real_clock
    stats = s.GetStats(labels_pb2.GetStatsRequest(), metadata=root)
    assert (stats.submitted, stats.resolved, stats.per_class["b"], stats.active_leases) == (1, 1, 1, 1)
    [resolved] = s.ListResolved(labels_pb2.ListResolvedRequest(), metadata=root).labels
    assert (resolved.frame_id, resolved.label, resolved.sequence) == (task.frame_id, "b", 1)


def test_overlap_consensus_adjudication_agreement_and_exports(api):
    s = api.stub
    root = api.login("root", "root-password")
    project = s.GetProject(labels_pb2.GetProjectRequest(), metadata=root)
    project.overlap_fraction, project.overlap_k = 1.0, 2
    assert code_of(lambda: s.UpdateProject(labels_pb2.Project(class_names=["a"]), metadata=root))[0] == \
        Code.INVALID_ARGUMENT
    s.UpdateProject(project, metadata=root)
    a1, a2 = api.user(root, "a1"), api.user(root, "a2")
    rev = api.user(root, "rev", labels_pb2.ROLE_REVIEWER)
    answers = {"a1": "aaab", "a2": "abaa"}  # frames 0 and 2 agree; 1 and 3 are ties
    for i in range(4):
        t1 = s.NextTask(labels_pb2.NextTaskRequest(), metadata=a1)
        t2 = s.NextTask(labels_pb2.NextTaskRequest(), metadata=a2)
        assert t1.frame_id == t2.frame_id and t1.overlap
        api.submit(a1, t1, label=answers["a1"][i])
        api.submit(a2, t2, label=answers["a2"][i])
    items = s.ListAdjudications(labels_pb2.ListAdjudicationsRequest(), metadata=rev).items
    assert [(i.frame_id, i.reason, dict(i.votes)) for i in items] == [
        ("vid:000001", "tie", {"a": 1, "b": 1}), ("vid:000003", "tie", {"a": 1, "b": 1})]
    assert s.Adjudicate(labels_pb2.AdjudicateRequest(frame_id="vid:000001", label="b", request_id="x"),
                        metadata=rev).resolved
    assert code_of(lambda: s.Adjudicate(labels_pb2.AdjudicateRequest(frame_id="vid:000001", label="a",
                                                                      request_id="y"), metadata=rev))[0] == \
        Code.FAILED_PRECONDITION
    resolved = s.ListResolved(labels_pb2.ListResolvedRequest(), metadata=rev).labels
    assert [(r.frame_id, r.label) for r in resolved] == [("vid:000000", "a"), ("vid:000002", "a"),
                                                         ("vid:000001", "b")]
    assert [r.sequence for r in resolved] == [1, 2, 3]
    assert [r.frame_id for r in s.ListResolved(labels_pb2.ListResolvedRequest(after_sequence=2),
                                               metadata=rev).labels] == ["vid:000001"]
    agreement = s.GetAgreement(labels_pb2.GetAgreementRequest(), metadata=a1)
    [pair] = agreement.cohen
    assert (pair.a, pair.b, pair.n) == ("a1", "a2", 4)
    assert pair.kappa == pytest.approx(-1 / 3)  # observed 1/2, chance 10/16
    assert agreement.fleiss_items == 4 and not math.isnan(agreement.fleiss)
    assert {a.annotator: round(a.agreement, 3) for a in agreement.with_consensus} == {"a1": 0.667, "a2": 1.0}
    rows = list(csv.DictReader(io.StringIO(s.Export(labels_pb2.ExportRequest(
        format=labels_pb2.EXPORT_FORMAT_CSV), metadata=rev).data.decode())))
    assert [(r["frame_id"], r["label"], r["resolved_by"]) for r in rows] == [
        ("vid:000000", "a", "consensus"), ("vid:000002", "a", "consensus"), ("vid:000001", "b", "rev")]
    doc = json.loads(s.Export(labels_pb2.ExportRequest(format=labels_pb2.EXPORT_FORMAT_JSON), metadata=rev).data)
    assert len(doc["labels"]) == 3 and len(doc["labels"][0]["answers"]) == 2
    coco = json.loads(s.Export(labels_pb2.ExportRequest(format=labels_pb2.EXPORT_FORMAT_COCO), metadata=rev).data)
    assert [c["name"] for c in coco["categories"]] == ["a", "b", "c"]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 1, 2]
    assert coco["images"][0]["file_name"] == "frames/vid/000000.png"
    assert code_of(lambda: s.Export(labels_pb2.ExportRequest(), metadata=rev))[0] == Code.INVALID_ARGUMENT


def test_twenty_annotators_in_parallel(db_url, tmp_path):
    """20 threads with their own channels against a real server process: no double lease, no lost label."""
    env = {"LUMENAL_AUTH_SECRET": SECRET, "LUMENAL_LABELS_OVERLAP_FRACTION": "0.25",
           "LUMENAL_LABELS_OVERLAP_K": "3", "LUMENAL_LABELS_CONSUME_FRAMES": "false",
           "LUMENAL_LABELS_PUBLISH_EVENTS": "false", "LUMENAL_LABELS_CLASS_NAMES": "a,b,c",
           "LUMENAL_INFERENCE_ADDR": f"127.0.0.1:{free_port()}"}
    settings = from_env(LabelsSettings, environ=env)
    names = loadtest.seed(db_url, 20, 160, settings.class_list(), settings)
    proc, target = loadtest.start_server(db_url, env, tmp_path)
    try:
        start = time.perf_counter()
        out = loadtest.run_annotators(target, names, settings.class_list(), skip_p=0.05, dup_p=0.1)
        wall = time.perf_counter() - start
    finally:
        proc.stop()
    report = loadtest.check(db_url, out)
    print(f"\n20 annotators on {db_url.split(':')[0]}: {report} wall {wall:.1f}s")
    assert report["problems"] == []
    assert report["overlap_frames"] > 0 and report["duplicates"] > 0
    assert report["resolved"] + report["adjudication"] == report["frames"] == 160
    assert report["labels"] == len(out.accepted) >= 160


def test_pooled_connection_the_server_dropped_is_replaced_after_idling(pg_url, monkeypatch):
    """PostgreSQL restarted while the service was idle: the checkout ping finds the dead connection."""
    import sqlalchemy as sa

    from lumenal.labels import db as labels_db

    database = labels_db.Database(pg_url, pool_size=1)
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with database.read_conn() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as c:
            c.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            deadline = time.monotonic() + 10
            while c.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar():
                assert time.monotonic() < deadline, "backend did not exit"
                time.sleep(0.05)
        monkeypatch.setattr(labels_db, "IDLE_PING_S", 0.0)  # the pooled connection now counts as idle
        with database.read_conn() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
    finally:
        admin.dispose()
        database.dispose()
