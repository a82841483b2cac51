"""Lease, overlap, answer and account logic on a real SQLite file, with a controllable clock."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from lumenal.core import auth
from lumenal.core.config import from_env
from lumenal.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from lumenal.labels import models as m
from lumenal.labels.server import build
from lumenal.labels.settings import LabelsSettings
from lumenal.labels.tasks import required_answers
from lumenal.v1 import common_pb2, labels_pb2

CLASS, SKIP, UNSURE = common_pb2.LABEL_KIND_CLASS, common_pb2.LABEL_KIND_SKIP, common_pb2.LABEL_KIND_UNSURE


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeRanker:
    """Stands in for inference TopK: a fixed ranking, recording what it was asked."""

    def __init__(self, order: list[str] | None) -> None:
        self.order, self.calls = order, []

    def available(self) -> bool:
        return True

    def top(self, k, strategy, exclude):  # noqa: ANN001, ANN201
        self.calls.append((k, strategy, list(exclude)))
        if self.order is None:
            return None
        return [common_pb2.FrameScore(frame_id=f, entropy=0.5) for f in self.order if f not in exclude][:k]

    def strategies(self):  # noqa: ANN201
        return ["random", "entropy"]


@pytest.fixture
def app(tmp_path):
    settings = from_env(LabelsSettings, environ={}, db_url=f"sqlite:///{tmp_path}/labels.db",
                        overlap_fraction=0.0, overlap_k=3, lease_ttl_s=60, auth_secret="unit-secret",
                        class_names="a,b,c")
    app = build(settings)
    app.tasks.ranker = FakeRanker(None)
    app.tasks.clock = app.reports.clock = Clock()
    app.tasks.add_frames([common_pb2.FrameMeta(frame_id=f"v:{i:06d}", video_id="v", frame_index=i)
                          for i in range(5)])
    yield app
    app.db.dispose()


def set_overlap(app, fraction: float, k: int) -> None:  # noqa: ANN001
    p = app.tasks.project().to_proto()
    p.overlap_fraction, p.overlap_k = fraction, k
    app.tasks.update_project(p, "test")


def submit(app, who: str, task, kind=CLASS, label="a", rid: str | None = None):  # noqa: ANN001, ANN201
    req = labels_pb2.SubmitLabelRequest(request_id=rid or f"{who}-{task.lease_id}", lease_id=task.lease_id,
                                        frame_id=task.frame_id, kind=kind, label=label)
    return app.tasks.submit(who, req)


def test_migrations_match_models(app):
    with app.db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), m.Base.metadata) == []


def test_fallback_order_and_one_frame_per_annotator(app):
    t1 = app.tasks.next_task("ann1")
    t2 = app.tasks.next_task("ann2")
    assert (t1.frame_id, t2.frame_id) == ("v:000000", "v:000001")
    assert t1.source == "fallback" and not t1.overlap
    assert app.tasks.next_task("ann1").lease_id == t1.lease_id  # reload: same task, no second lease


def test_inference_order_used_and_told_what_to_exclude(app, monkeypatch):
    from lumenal.labels import tasks

    app.tasks.ranker = FakeRanker(["v:000003", "v:000001"])
    t = app.tasks.next_task("ann1")
    assert (t.frame_id, t.source, t.score.entropy) == ("v:000003", "inference", pytest.approx(0.5))
    t2 = app.tasks.next_task("ann2")
    assert (t2.frame_id, len(app.tasks.ranker.calls)) == ("v:000001", 1)  # one TopK call served both
    t3 = app.tasks.next_task("ann3")  # both candidates taken: TopK is asked again, then ingest order
    assert (t3.frame_id, t3.source, len(app.tasks.ranker.calls)) == ("v:000000", "fallback", 2)
    assert {"v:000003", "v:000001"} <= set(app.tasks.ranker.calls[-1][2])  # leased frames excluded
    app.tasks.ranker.order = ["v:000004"]
    assert app.tasks.next_task("ann4").frame_id == "v:000002"  # no TopK yet: fallback's next frame
    monkeypatch.setattr(tasks, "RANKING_CACHE_S", 0.0)  # the shared ranking ages out
    assert app.tasks.next_task("ann5").frame_id == "v:000004"


def test_hidden_predictions_leave_score_empty(app):
    p = app.tasks.project().to_proto()
    p.hide_predictions = True
    app.tasks.update_project(p, "test")
    app.tasks.ranker = FakeRanker(["v:000002"])
    t = app.tasks.next_task("ann1")
    assert t.source == "inference" and not t.HasField("score")


def test_expired_lease_returns_frame_and_late_submit_is_rejected(app):
    t = app.tasks.next_task("ann1")
    app.tasks.clock.now += 61
    t2 = app.tasks.next_task("ann2")
    assert t2.frame_id == t.frame_id  # back in the pool
    with pytest.raises(FailedPrecondition, match="expired"):
        submit(app, "ann1", t)
    assert app.reports.stats().submitted == 0
    assert not submit(app, "ann2", t2).duplicate


def test_release_returns_frame(app):
    t = app.tasks.next_task("ann1")
    app.tasks.release("ann1", t.lease_id)
    app.tasks.release("ann1", t.lease_id)  # idempotent
    assert app.tasks.next_task("ann2").frame_id == t.frame_id
    with pytest.raises(PermissionDenied):
        app.tasks.release("ann3", t.lease_id)
    with pytest.raises(NotFound):
        app.tasks.release("ann1", "nope")


def test_submit_is_idempotent_and_validated(app):
    t = app.tasks.next_task("ann1")
    first = submit(app, "ann1", t, rid="r1")
    again = submit(app, "ann1", t, rid="r1")
    assert first.resolved and again.duplicate and again.label_id == first.label_id and again.resolved
    assert app.reports.stats().submitted == 1
    with pytest.raises(InvalidArgument, match="different answer"):
        submit(app, "ann1", t, label="b", rid="r1")
    with pytest.raises(FailedPrecondition, match="already answered"):
        submit(app, "ann1", t, rid="r2")
    t2 = app.tasks.next_task("ann1")
    with pytest.raises(InvalidArgument, match="different answer"):  # r1 reused on a live lease: rolled back
        submit(app, "ann1", t2, rid="r1")
    with pytest.raises(InvalidArgument, match="not in the class set"):
        submit(app, "ann1", t2, label="zebra")
    with pytest.raises(InvalidArgument, match="kind"):
        submit(app, "ann1", t2, kind=common_pb2.LABEL_KIND_UNSPECIFIED)
    with pytest.raises(PermissionDenied):
        submit(app, "ann2", t2)
    bad = labels_pb2.SubmitLabelRequest(request_id="x", lease_id=t2.lease_id, frame_id="v:999999",
                                        kind=CLASS, label="a")
    with pytest.raises(NotFound, match="unknown frame"):
        app.tasks.submit("ann1", bad)
    assert app.reports.stats().submitted == 1  # nothing recorded by the bad calls


def test_skip_returns_frame_to_others_only(app):
    app.tasks.add_frames([])  # no-op
    t = app.tasks.next_task("ann1")
    assert not submit(app, "ann1", t, kind=SKIP, label="ignored").resolved
    assert app.tasks.next_task("ann1").frame_id != t.frame_id
    assert app.tasks.next_task("ann2").frame_id == t.frame_id


def test_overlap_frames_get_k_distinct_annotators_then_consensus(app):
    set_overlap(app, 1.0, 3)
    tasks = [app.tasks.next_task(a) for a in ("a1", "a2", "a3")]
    assert {t.frame_id for t in tasks} == {"v:000000"} and all(t.overlap for t in tasks)
    assert app.tasks.next_task("a4").frame_id == "v:000001"  # 3 slots taken
    results = [submit(app, who, t, label=lab) for who, t, lab in zip(("a1", "a2", "a3"), tasks, "aab",
                                                                      strict=True)]
    assert [r.resolved for r in results] == [False, False, True]
    resolved = app.reports.list_resolved(0, 10)
    assert [(r.frame_id, r.label, r.sequence) for r in resolved] == [("v:000000", "a", 1)]
    kappas = {(p.a, p.b): p for p in app.reports.agreement().cohen}
    assert kappas[("a1", "a2")].n == 1
    agree = {a.annotator: a.agreement for a in app.reports.agreement().with_consensus}
    assert agree == {"a1": 1.0, "a2": 1.0, "a3": 0.0}


def test_tie_goes_to_adjudication(app):
    set_overlap(app, 1.0, 2)
    t1, t2 = app.tasks.next_task("a1"), app.tasks.next_task("a2")
    submit(app, "a1", t1, label="a")
    assert not submit(app, "a2", t2, label="b").resolved
    [item] = app.tasks.list_adjudications(10)
    assert (item.frame_id, item.reason, dict(item.votes)) == (t1.frame_id, "tie", {"a": 1, "b": 1})
    with pytest.raises(InvalidArgument):
        app.tasks.adjudicate("rev", t1.frame_id, "zebra", "q1")
    assert app.tasks.adjudicate("rev", t1.frame_id, "b", "q1")
    assert app.tasks.adjudicate("rev", t1.frame_id, "b", "q1")  # retry of the same request
    with pytest.raises(FailedPrecondition, match="already resolved"):
        app.tasks.adjudicate("rev", t1.frame_id, "a", "q2")
    with pytest.raises(FailedPrecondition, match="not waiting"):
        app.tasks.adjudicate("rev", "v:000004", "a", "q3")
    with pytest.raises(NotFound):
        app.tasks.adjudicate("rev", "v:999999", "a", "q4")
    assert app.tasks.list_adjudications(10) == []
    [r] = app.reports.list_resolved(0, 10)
    assert r.label == "b"


def test_unsure_alone_needs_a_reviewer(app):
    t = app.tasks.next_task("a1")
    assert not submit(app, "a1", t, kind=UNSURE).resolved
    [item] = app.tasks.list_adjudications(10)
    assert (item.reason, item.unsure) == ("unsure", 1)


def test_required_answers_share_is_stable_and_close_to_fraction():
    ids = [f"vid:{i:06d}" for i in range(4000)]
    share = sum(required_answers(f, 0.25, 3) == 3 for f in ids) / len(ids)
    assert 0.22 < share < 0.28
    assert [required_answers(f, 0.25, 3) for f in ids[:50]] == [required_answers(f, 0.25, 3) for f in ids[:50]]
    assert all(required_answers(f, 0.0, 3) == 1 for f in ids[:100])


def test_project_validation(app):
    p = app.tasks.project().to_proto()
    for field, value in [("overlap_fraction", 1.5), ("overlap_k", 0), ("lease_ttl_s", 1)]:
        bad = labels_pb2.Project()
        bad.CopyFrom(p)
        setattr(bad, field, value)
        with pytest.raises(InvalidArgument):
            app.tasks.update_project(bad, "t")
    bad = labels_pb2.Project()
    bad.CopyFrom(p)
    bad.strategy = "nonsense"
    with pytest.raises(InvalidArgument, match="unknown strategy"):
        app.tasks.update_project(bad, "t")
    t = app.tasks.next_task("a1")
    submit(app, "a1", t, label="c")
    del bad.class_names[:]
    bad.class_names.extend(["a", "b"])
    bad.strategy = "entropy"
    with pytest.raises(FailedPrecondition, match="cannot remove"):
        app.tasks.update_project(bad, "t")
    bad.class_names.append("c")
    bad.class_names.append("d")
    assert app.tasks.update_project(bad, "t").class_names == ("a", "b", "c", "d")


def test_accounts_login_logout_and_roles(app):
    acc = app.accounts
    acc.create("boss", "password1", auth.ADMIN)
    acc.create("ann", "password1", auth.ANNOTATOR)
    with pytest.raises(AlreadyExists):
        acc.create("ann", "password1", auth.ANNOTATOR)
    with pytest.raises(InvalidArgument):
        acc.create("short", "pw", auth.ANNOTATOR)
    with pytest.raises(Unauthenticated):
        acc.login("ann", "wrong-password")
    token, user, _ = acc.login("ann", "password1")
    assert acc.authenticate(token).role == auth.ANNOTATOR
    acc.update("ann", role=auth.REVIEWER)
    assert acc.authenticate(token).role == auth.REVIEWER  # current role, not the token's
    acc.logout(acc.authenticate(token))
    with pytest.raises(Unauthenticated, match="revoked"):
        acc.authenticate(token)
    token, _, _ = acc.login("ann", "password1")
    acc.update("ann", active=False)
    with pytest.raises(Unauthenticated, match="revoked"):
        acc.authenticate(token)
    with pytest.raises(Unauthenticated, match="deactivated"):
        acc.login("ann", "password1")
    with pytest.raises(FailedPrecondition, match="last active admin"):
        acc.update("boss", active=False)
    assert acc.authenticate(auth.service_token("unit-secret", "training")).role == auth.SERVICE
    assert "argon2" in acc.get("ann").password_hash


def test_session_cache_honours_revocation_elsewhere_within_its_ttl(app, monkeypatch):
    from lumenal.labels import accounts
    from lumenal.labels.accounts import Accounts

    app.accounts.create("ann", "password1", auth.ANNOTATOR)
    token, _, _ = app.accounts.login("ann", "password1")
    principal = app.accounts.authenticate(token)  # now cached
    replica = Accounts(app.db, "unit-secret", 3600)  # another replica (or the CLI) revokes the session
    replica.logout(principal)
    assert app.accounts.authenticate(token).subject == "ann"  # still cached: at most SESSION_CACHE_S
    monkeypatch.setattr(accounts, "SESSION_CACHE_S", 0.0)  # the cache entry has aged out
    with pytest.raises(Unauthenticated, match="revoked"):
        app.accounts.authenticate(token)


def test_frames_handler_retries_when_the_database_is_down(app):
    from sqlalchemy.exc import OperationalError

    from lumenal.core import events
    from lumenal.core.errors import Unavailable
    from lumenal.v1 import events_pb2

    def down(frames):  # noqa: ANN001, ANN202
        raise OperationalError("INSERT", {}, Exception("connection refused"))
    app.tasks.add_frames = down
    with pytest.raises(Unavailable) as info:
        app._on_frames(events_pb2.FramesIngested(frames=[common_pb2.FrameMeta(frame_id="v:000009")]), None)
    assert events.is_transient(info.value)  # the consumer retries instead of dead-lettering
