"""The labeling workflow: project policy, frame pool, leases, answers, consensus, adjudication.

Concurrency rests on three atomic database operations that behave the same
on SQLite and PostgreSQL (see ``models``): the conditional update of
``frames.held``, the unique ``leases.annotator_key`` / ``active_annotator``,
and the unique ``labels(annotator, request_id)``. No step relies on a read
staying true until the write ("check then act").
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from prometheus_client import Counter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lumenal.core import topics
from lumenal.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
)
from lumenal.labels import models as m
from lumenal.labels.agreement import consensus
from lumenal.labels.db import Database
from lumenal.labels.outbox import enqueue
from lumenal.labels.ranking import Ranker
from lumenal.labels.settings import LabelsSettings
from lumenal.v1 import common_pb2, events_pb2, labels_pb2

log = logging.getLogger(__name__)

LEASES = Counter("lumenal_labels_leases_total", "leases granted", ["source"])
EXPIRED = Counter("lumenal_labels_leases_expired_total", "leases that expired unanswered")
SUBMITTED = Counter("lumenal_labels_submitted_total", "answers accepted", ["kind"])
DUPLICATES = Counter("lumenal_labels_duplicate_submits_total", "submits answered from the idempotency key")
RESOLVED = Counter("lumenal_labels_resolved_total", "frames whose label became final", ["by"])

KINDS = {common_pb2.LABEL_KIND_CLASS: "class", common_pb2.LABEL_KIND_SKIP: "skip",
         common_pb2.LABEL_KIND_UNSURE: "unsure"}
KIND_ENUM = {v: k for k, v in KINDS.items()}
MAX_ATTEMPTS = 20
MAX_EXCLUDE = 5000
PROJECT_CACHE_S = 2.0
RANKING_CACHE_S = 5.0
# Hot statements built once (building a statement costs about as much as running it). The hot
# path runs them as Core on one connection per call: an ORM session costs as much again.
_frames, _leases, _labels = m.Frame.__table__, m.Lease.__table__, m.Label.__table__
_counters = m.Counter.__table__
# (some overdue lease, the caller's active lease): one round trip before leasing.
_STATE = sa.select(
    sa.select(_leases.c.id).where(_leases.c.state == "active", _leases.c.expires_at < sa.bindparam("now"))
    .limit(1).scalar_subquery(),
    sa.select(_leases.c.id).where(_leases.c.active_annotator == sa.bindparam("who")).scalar_subquery())
_CURRENT = (sa.select(_frames, _leases.c.id.label("lease_id"), _leases.c.expires_at, _leases.c.overlap,
                      _leases.c.source.label("lease_source"), _leases.c.score)
            .join_from(_frames, _leases, _frames.c.frame_id == _leases.c.frame_id)
            .where(_leases.c.active_annotator == sa.bindparam("who")))
_EXPIRE = (sa.update(_leases).where(_leases.c.state == "active", _leases.c.expires_at < sa.bindparam("now"))
           .values(state="expired", active_annotator=None, annotator_key=None).returning(_leases.c.frame_id))
_PREVIOUS = sa.select(_labels).where(_labels.c.annotator == sa.bindparam("who"),
                                     _labels.c.request_id == sa.bindparam("rid"))
_LEASE = sa.select(_leases).where(_leases.c.id == sa.bindparam("lid"))
_FRAME_STATUS = sa.select(_frames.c.status).where(_frames.c.frame_id == sa.bindparam("fid"))
_CLAIM = (sa.update(_frames)
          .where(_frames.c.frame_id == sa.bindparam("fid"), _frames.c.status == "open",
                 _frames.c.held < sa.func.coalesce(_frames.c.required, sa.bindparam("req")))
          .values(held=_frames.c.held + 1, required=sa.func.coalesce(_frames.c.required, sa.bindparam("req")))
          .returning(_frames.c.required))
_HELD_DOWN = sa.update(_frames).where(_frames.c.frame_id == sa.bindparam("fid")).values(held=_frames.c.held - 1)
# An answer counts (answer=1), a skip gives its slot back (drop=1).
_COUNT = (sa.update(_frames).where(_frames.c.frame_id == sa.bindparam("fid"))
          .values(answers=_frames.c.answers + sa.bindparam("answer"), held=_frames.c.held - sa.bindparam("drop"))
          .returning(_frames.c.answers, _frames.c.required))
# Closes the lease only when it is the caller's, for this frame, and still live; else nothing changes
# and ``_explain_closed`` says why.
_CLOSE_LEASE = (sa.update(_leases)
                .where(_leases.c.id == sa.bindparam("lid"), _leases.c.annotator == sa.bindparam("who"),
                       _leases.c.frame_id == sa.bindparam("fid"), _leases.c.state == "active",
                       _leases.c.expires_at >= sa.bindparam("now"))
                .values(state=sa.bindparam("new_state"), active_annotator=None))
_NEXT_SEQ = (sa.update(_counters).where(_counters.c.name == "resolved")
             .values(value=_counters.c.value + 1).returning(_counters.c.value))
_VOTES = sa.select(_labels.c.kind, _labels.c.label).where(_labels.c.frame_id == sa.bindparam("fid"),
                                                          _labels.c.kind != "skip")


def _resolve_frame(seq: sa.ColumnElement) -> sa.Update:
    return (sa.update(_frames).where(_frames.c.frame_id == sa.bindparam("fid"))
            .values(status="resolved", resolved_label=sa.bindparam("label"), resolved_by=sa.bindparam("by"),
                    resolved_votes=sa.bindparam("votes"), resolved_at=sa.bindparam("now"),
                    resolved_seq=seq, resolved_request_id=sa.bindparam("rid"))
            .returning(_frames.c.resolved_seq))


_RESOLVE = _resolve_frame(sa.bindparam("seq"))
_TO_ADJUDICATION = (sa.update(_frames).where(_frames.c.frame_id == sa.bindparam("fid"))
                    .values(status="adjudication", adjudication_reason=sa.bindparam("reason")))
_LEASE_COLUMNS = ("id", "frame_id", "annotator", "created_at", "expires_at", "state", "source",
                  "active_annotator", "annotator_key", "score")
_LABEL_COLUMNS = ("id", "request_id", "annotator", "frame_id", "lease_id", "kind", "label", "seconds_spent",
                  "submitted_at", "day")
# Row values are passed as "v_<column>": a parameter named like a column would also be SET by
# any UPDATE executed with the same parameters.
_INSERT_LEASE = sa.insert(_leases).values({k: sa.bindparam(f"v_{k}") for k in (*_LEASE_COLUMNS, "overlap")})
_INSERT_LABEL = sa.insert(_labels).values({k: sa.bindparam(f"v_{k}") for k in _LABEL_COLUMNS})


def _values(**row: object) -> dict[str, object]:
    return {f"v_{k}": v for k, v in row.items()}


def _params_row(table: sa.Table, columns: tuple[str, ...]) -> sa.Select:
    """A one-row SELECT of the typed "v_<column>" parameters (for INSERT ... SELECT)."""
    return sa.select(*(sa.bindparam(f"v_{k}", type_=table.c[k].type) for k in columns))


# PostgreSQL chains dependent steps in one statement (data-modifying CTEs): there a round trip,
# not the work, is most of each step's cost. SQLite runs the same steps one by one, in-process.
_claimed = _CLAIM.cte("claimed")
_CLAIM_AND_LEASE_PG = (sa.insert(_leases).from_select(
    [*_LEASE_COLUMNS, "overlap"],
    _params_row(_leases, _LEASE_COLUMNS).add_columns(_claimed.c.required > 1).select_from(_claimed))
    .returning(_leases.c.overlap))
_closed = _CLOSE_LEASE.returning(_leases.c.frame_id).cte("closed")
_labeled = (sa.insert(_labels).from_select(_LABEL_COLUMNS, _params_row(_labels, _LABEL_COLUMNS).select_from(_closed))
            .returning(_labels.c.frame_id).cte("labeled"))
_CLOSE_LABEL_COUNT_PG = (_COUNT.where(_frames.c.frame_id == sa.select(_labeled.c.frame_id).scalar_subquery()))
_RESOLVE_PG = _resolve_frame(sa.select(_NEXT_SEQ.cte("seq").c.value).scalar_subquery())
# Open frames with a free slot that this annotator ("#name" suffix) never held, in ingest order.
_FREE = (sa.select(_frames)
         .where(_frames.c.status == "open", _frames.c.held < sa.func.coalesce(_frames.c.required, 1),
                ~sa.exists().where(_leases.c.annotator_key == _frames.c.frame_id.concat(sa.bindparam("suffix"))))
         .order_by(_frames.c.id).limit(1).with_for_update(skip_locked=True, of=_frames))


@dataclass(frozen=True)
class ProjectConfig:
    class_names: tuple[str, ...]
    strategy: str
    overlap_fraction: float
    overlap_k: int
    hide_predictions: bool
    lease_ttl_s: int

    @classmethod
    def from_row(cls, row: m.Project) -> ProjectConfig:
        return cls(tuple(json.loads(row.class_names)), row.strategy, row.overlap_fraction,
                   row.overlap_k, row.hide_predictions, row.lease_ttl_s)

    def to_proto(self) -> labels_pb2.Project:
        return labels_pb2.Project(class_names=self.class_names, strategy=self.strategy,
                                  overlap_fraction=self.overlap_fraction, overlap_k=self.overlap_k,
                                  hide_predictions=self.hide_predictions, lease_ttl_s=self.lease_ttl_s)


def required_answers(frame_id: str, overlap_fraction: float, overlap_k: int) -> int:
    """How many answers a frame needs: ``overlap_k`` for a stable hash-chosen share, else 1."""
    h = int.from_bytes(hashlib.sha256(frame_id.encode()).digest()[:8], "big") / 2.0 ** 64
    return max(1, overlap_k) if h < overlap_fraction else 1


def validate_project(p: labels_pb2.Project) -> ProjectConfig:
    names = tuple(c.strip() for c in p.class_names)
    if len(names) < 2:
        raise InvalidArgument("class_names needs at least two classes")
    if any(not c or len(c) > 200 for c in names) or len(set(names)) != len(names):
        raise InvalidArgument("class_names must be unique, non-empty and at most 200 characters")
    if not 0.0 <= p.overlap_fraction <= 1.0 or math.isnan(p.overlap_fraction):
        raise InvalidArgument("overlap_fraction must be between 0 and 1")
    if not 1 <= p.overlap_k <= 20 or (p.overlap_fraction > 0 and p.overlap_k < 2):
        raise InvalidArgument("overlap_k must be 1..20, and at least 2 when overlap_fraction > 0")
    if not 10 <= p.lease_ttl_s <= 86400:
        raise InvalidArgument("lease_ttl_s must be between 10 and 86400 seconds")
    if len(p.strategy) > 64:
        raise InvalidArgument("strategy name too long")
    return ProjectConfig(names, p.strategy.strip(), p.overlap_fraction, p.overlap_k,
                         p.hide_predictions, p.lease_ttl_s)


def frame_meta(f: m.Frame | sa.Row) -> common_pb2.FrameMeta:
    return common_pb2.FrameMeta(frame_id=f.frame_id, video_id=f.video_id, frame_index=f.frame_index,
                                timestamp_s=f.timestamp_s, object_key=f.object_key, width=f.width,
                                height=f.height, content_type=f.content_type,
                                ground_truth=f.ground_truth, source=f.source)


def _ts(seconds: float):  # noqa: ANN202 - protobuf Timestamp
    from google.protobuf.timestamp_pb2 import Timestamp
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _insert(dialect: str):  # noqa: ANN202 - dialect-specific insert with ON CONFLICT
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class Tasks:
    """Leasing and answering. ``clock`` is injectable so lease expiry is unit-testable."""

    def __init__(self, db: Database, ranker: Ranker | None, defaults: LabelsSettings,
                 clock: Callable[[], float] = time.time, notify: Callable[[], None] = lambda: None) -> None:
        self.db, self.ranker, self.defaults = db, ranker, defaults
        self.clock, self.notify = clock, notify
        self.topk = defaults.topk_candidates
        self._project: tuple[float, ProjectConfig] | None = None
        # TopK's ranking shared by all annotators: (monotonic time, ranker, strategy, candidates)
        self._ranking: tuple[float, Ranker, str, list[common_pb2.FrameScore]] | None = None
        self._ranking_lock = threading.Lock()

    # -- project ---------------------------------------------------------------
    def ensure_defaults(self) -> None:
        """First start: the project row from settings and the resolved-sequence counter."""
        d = self.defaults
        project = {"id": 1, "class_names": json.dumps(d.class_list()), "strategy": d.strategy,
                   "overlap_fraction": d.overlap_fraction, "overlap_k": d.overlap_k,
                   "hide_predictions": False, "lease_ttl_s": d.lease_ttl_s, "updated_at": time.time(),
                   "updated_by": "settings"}
        insert = _insert(self.db.dialect)

        def tx(s: Session) -> None:
            s.execute(insert(m.Project).values(**project).on_conflict_do_nothing(index_elements=["id"]))
            s.execute(insert(m.Counter).values(name="resolved", value=0)
                      .on_conflict_do_nothing(index_elements=["name"]))
        self.db.write(tx)

    def project(self) -> ProjectConfig:
        """The project policy, cached for ``PROJECT_CACHE_S`` (other replicas' updates show up that late)."""
        cached = self._project
        if cached is not None and time.monotonic() - cached[0] < PROJECT_CACHE_S:
            return cached[1]
        with self.db.read() as s:
            cfg = ProjectConfig.from_row(s.get(m.Project, 1))
        self._project = (time.monotonic(), cfg)
        return cfg

    def update_project(self, p: labels_pb2.Project, by: str) -> ProjectConfig:
        cfg = validate_project(p)
        known = self.ranker.strategies() if (self.ranker and cfg.strategy) else None
        if known is not None and cfg.strategy not in known:
            raise InvalidArgument(f"unknown strategy {cfg.strategy!r}; inference offers {', '.join(known)}")

        def tx(s: Session) -> ProjectConfig:
            row = s.scalar(sa.select(m.Project).where(m.Project.id == 1).with_for_update())
            removed = set(json.loads(row.class_names)) - set(cfg.class_names)
            in_use = 0
            if removed:
                in_use = (s.scalar(sa.select(sa.func.count()).select_from(m.Label)
                                   .where(m.Label.kind == "class", m.Label.label.in_(removed))) or 0) + \
                         (s.scalar(sa.select(sa.func.count()).select_from(m.Frame)
                                   .where(m.Frame.resolved_label.in_(removed))) or 0)
            if in_use:
                raise FailedPrecondition(f"cannot remove classes {sorted(removed)}: {in_use} answers or final labels use them")
            row.class_names = json.dumps(list(cfg.class_names))
            row.strategy, row.overlap_fraction, row.overlap_k = cfg.strategy, cfg.overlap_fraction, cfg.overlap_k
            row.hide_predictions, row.lease_ttl_s = cfg.hide_predictions, cfg.lease_ttl_s
            row.updated_at, row.updated_by = time.time(), by
            return cfg
        out = self.db.write(tx)
        self._project = None
        log.info("project updated", extra={"by": by, "project": str(out)})
        return out

    # -- frames ----------------------------------------------------------------
    def add_frames(self, frames: Iterable[common_pb2.FrameMeta]) -> int:
        """Insert frames (idempotent: a re-delivered event changes nothing)."""
        now = time.time()
        rows = [{"frame_id": f.frame_id, "video_id": f.video_id, "frame_index": f.frame_index,
                 "timestamp_s": f.timestamp_s, "object_key": f.object_key, "width": f.width,
                 "height": f.height, "content_type": f.content_type, "ground_truth": f.ground_truth,
                 "source": f.source, "ingested_at": now, "status": "open", "held": 0, "answers": 0,
                 "adjudication_reason": "", "resolved_by": "", "resolved_votes": 0,
                 "resolved_request_id": ""} for f in frames if f.frame_id]
        too_long = [r["frame_id"] for r in rows if len(r["frame_id"]) > 200]
        if too_long:  # cannot be stored; dropping them keeps the rest of the batch
            log.error("frame ids longer than 200 characters ignored", extra={"frame_ids": too_long[:5]})
            rows = [r for r in rows if len(r["frame_id"]) <= 200]
        if not rows:
            return 0
        stmt = _insert(self.db.dialect)(m.Frame).on_conflict_do_nothing(index_elements=["frame_id"])
        return self.db.write(lambda s: s.connection().execute(stmt, rows).rowcount)

    # -- leases ----------------------------------------------------------------
    def next_task(self, annotator: str) -> labels_pb2.Task:
        """The caller's current lease, else a new lease on the best free frame."""
        for _ in range(3):
            try:
                return self._next_task(annotator)
            except IntegrityError:  # the same annotator won a concurrent NextTask: answer with that lease
                continue
        return self._next_task(annotator)

    def _next_task(self, annotator: str) -> labels_pb2.Task:
        """One transaction: the caller's lease, else a lease on the best free candidate.

        Leases are soft state, so their transactions do not wait for a durable
        commit: one lost in a database crash leaves a consistent pool (lease and
        slot vanish together) and its SubmitLabel fails with "unknown lease".
        A durable SubmitLabel commit also makes the lease before it durable.
        """
        project = self.project()
        ranked = self._ranked(project)
        if ranked:
            task = self.db.write_conn(lambda c: self._lease(c, annotator, project, "inference", ranked),
                                      durable=False)
            if task is None:  # every candidate is taken or was answered by the caller: ask TopK again
                ranked = self._ranked(project, exhausted=ranked)
                if ranked:
                    task = self.db.write_conn(lambda c: self._lease(c, annotator, project, "inference", ranked),
                                              durable=False)
            if task is not None:
                return task
        task = self.db.write_conn(lambda c: self._lease(c, annotator, project, "fallback", None), durable=False)
        if task is None:
            raise NotFound("no frame is waiting for you: every frame is labeled, leased to others, "
                           "or already answered by you")
        return task

    def _current(self, c: sa.Connection, annotator: str, project: ProjectConfig) -> labels_pb2.Task | None:
        """The caller's live lease, after expiring overdue leases (their slots go back to the pool)."""
        overdue, current = c.execute(_STATE, {"now": self.clock(), "who": annotator}).one()
        if overdue is not None:
            self._reap(c)
        if current is None:
            return None
        row = c.execute(_CURRENT, {"who": annotator}).first()  # None when the reap just expired it
        if row is None:
            return None
        return self._task(row, row.lease_id, row.expires_at, row.overlap, row.lease_source, row.score, project)

    def _reap(self, c: sa.Connection) -> None:
        """Expire overdue leases and give their slots back to the pool."""
        expired = c.execute(_EXPIRE, {"now": self.clock()}).scalars().all()
        for frame_id in sorted(expired):  # fixed order: no deadlock between two reapers
            c.execute(_HELD_DOWN, {"fid": frame_id})
        if expired:
            EXPIRED.inc(len(expired))
            log.info("leases expired", extra={"frames": len(expired)})

    def _ranked(self, project: ProjectConfig,
                exhausted: list[common_pb2.FrameScore] | None = None) -> list[common_pb2.FrameScore] | None:
        """TopK's candidates, shared by all annotators and refreshed every ``RANKING_CACHE_S`` or when
        ``exhausted`` (a list the caller found all taken) is still the current one; None without inference.

        One TopK call serves many NextTasks instead of one each. A list a few seconds
        old is safe: the lease query skips frames taken meanwhile and frames the caller
        held or answered; it is only that much less fresh.
        """
        with self._ranking_lock:  # one refresh at a time; the others wait for its result
            cached = self._ranking
            if cached is not None and cached[1:3] == (self.ranker, project.strategy) and \
                    time.monotonic() - cached[0] < RANKING_CACHE_S and cached[3] is not exhausted:
                return cached[3]
            self._ranking = None
            if self.ranker is None or not self.ranker.available():
                return None
            with self.db.read() as s:
                exclude = self._exclusions(s)
            ranked = self.ranker.top(self.topk, project.strategy, exclude)
            if ranked is not None:  # an empty ranking is kept too: nothing to rank changes no faster
                self._ranking = (time.monotonic(), self.ranker, project.strategy, ranked)
            return ranked

    @staticmethod
    def _exclusions(s: Session) -> list[str]:
        """Frames TopK must not return: every slot held, or waiting for a reviewer."""
        full = sa.and_(m.Frame.status == "open", m.Frame.held > 0,
                       m.Frame.held >= sa.func.coalesce(m.Frame.required, 1))
        q = sa.select(m.Frame.frame_id).where(sa.or_(m.Frame.status == "adjudication", full)).limit(MAX_EXCLUDE)
        return list(s.scalars(q))

    def _lease(self, c: sa.Connection, annotator: str, project: ProjectConfig, source: str,
               ranked: list[common_pb2.FrameScore] | None) -> labels_pb2.Task | None:
        """The caller's live lease, else a lease on the first free frame in ``ranked`` order
        (ingest order when None); None when no frame is free.

        ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite serializes writers anyway)
        lets concurrent annotators pass over a frame another one is claiming
        instead of queueing behind it.
        """
        current = self._current(c, annotator, project)
        if current is not None:
            return current
        scores = {sc.frame_id: sc for sc in ranked} if ranked is not None else None
        tried: set[str] = set()
        for _ in range(MAX_ATTEMPTS):
            q = _FREE
            if tried:
                q = q.where(_frames.c.frame_id.not_in(tried))
            if scores is not None:
                rank = {frame_id: i for i, frame_id in enumerate(scores)}
                q = q.where(_frames.c.frame_id.in_(list(scores))).order_by(None).order_by(
                    sa.case(rank, value=_frames.c.frame_id))
            frame = c.execute(q, {"suffix": "#" + annotator}).first()
            if frame is None:
                return None
            task = self._take(c, annotator, frame, project, source, (scores or {}).get(frame.frame_id))
            if task is not None:
                LEASES.labels(source).inc()
                return task
            tried.add(frame.frame_id)
        return None

    def _take(self, c: sa.Connection, annotator: str, frame: sa.Row, project: ProjectConfig, source: str,
              score: common_pb2.FrameScore | None) -> labels_pb2.Task | None:
        """Claim one slot of the frame atomically; None when it is taken.

        A unique-key conflict (this annotator got a lease concurrently) aborts the
        transaction with IntegrityError; ``next_task`` then returns that lease.
        """
        required = required_answers(frame.frame_id, project.overlap_fraction, project.overlap_k)
        now, lease_id = self.clock(), uuid.uuid4().hex
        expires_at, blob = now + project.lease_ttl_s, score.SerializeToString() if score is not None else None
        p = {"fid": frame.frame_id, "req": required, **_values(
            id=lease_id, frame_id=frame.frame_id, annotator=annotator, created_at=now, expires_at=expires_at,
            state="active", source=source, active_annotator=annotator,
            annotator_key=f"{frame.frame_id}#{annotator}", score=blob)}
        if c.dialect.name == "postgresql":
            overlap = c.execute(_CLAIM_AND_LEASE_PG, p).scalar()
        else:
            claimed = c.execute(_CLAIM, p).scalar()
            overlap = None if claimed is None else claimed > 1
            if overlap is not None:
                c.execute(_INSERT_LEASE, {**p, "v_overlap": overlap})
        if overlap is None:  # taken meanwhile
            return None
        return self._task(frame, lease_id, expires_at, overlap, source, blob, project)

    @staticmethod
    def _task(frame: m.Frame | sa.Row, lease_id: str, expires_at: float, overlap: bool, source: str,
              score: bytes | None, project: ProjectConfig) -> labels_pb2.Task:
        task = labels_pb2.Task(lease_id=lease_id, frame_id=frame.frame_id, expires_at=_ts(expires_at),
                               overlap=overlap, source=source, frame=frame_meta(frame))
        if score and not project.hide_predictions:
            task.score.ParseFromString(score)
        return task

    def release(self, annotator: str, lease_id: str) -> None:
        """Give a lease back unanswered (idempotent; an expired lease is already back)."""
        def tx(s: Session) -> None:
            lease = s.get(m.Lease, lease_id)
            if lease is None:
                raise NotFound(f"no lease {lease_id!r}")
            if lease.annotator != annotator:
                raise PermissionDenied("this lease belongs to another annotator")
            if lease.state in ("done", "skipped"):
                raise FailedPrecondition("this lease was already answered")
            released = s.execute(sa.update(m.Lease).where(m.Lease.id == lease_id, m.Lease.state == "active")
                                 .values(state="released", active_annotator=None, annotator_key=None)
                                 .execution_options(synchronize_session=False)).rowcount
            if released:
                s.execute(sa.update(m.Frame).where(m.Frame.frame_id == lease.frame_id)
                          .values(held=m.Frame.held - 1).execution_options(synchronize_session=False))
        self.db.write(tx)

    # -- answers ---------------------------------------------------------------
    def submit(self, annotator: str, req: labels_pb2.SubmitLabelRequest) -> labels_pb2.SubmitLabelResponse:
        """Record one answer exactly once (idempotent by ``request_id``)."""
        project = self.project()
        kind = self._validate(req, project)
        try:
            out = self.db.write_conn(lambda c: self._submit(c, annotator, req, kind))
        except IntegrityError:  # request_id taken (concurrently, or by another answer): look it up first
            out = self.db.write_conn(lambda c: self._submit(c, annotator, req, kind, previous_first=True))
        if not out.duplicate:
            SUBMITTED.labels(kind).inc()
            self.notify()
        return out

    @staticmethod
    def _validate(req: labels_pb2.SubmitLabelRequest, project: ProjectConfig) -> str:
        if not req.request_id or len(req.request_id) > 128:
            raise InvalidArgument("request_id (1-128 characters, unique per answer) is required")
        if not req.frame_id:
            raise InvalidArgument("frame_id is required")
        if not req.lease_id:
            raise InvalidArgument("lease_id is required: ask NextTask for a task first")
        kind = KINDS.get(req.kind)
        if kind is None:
            raise InvalidArgument("kind must be LABEL_KIND_CLASS, LABEL_KIND_SKIP or LABEL_KIND_UNSURE")
        if kind == "class" and req.label not in project.class_names:
            raise InvalidArgument(f"label {req.label!r} is not in the class set {list(project.class_names)}")
        if not (req.seconds_spent >= 0 and math.isfinite(req.seconds_spent)):
            raise InvalidArgument("seconds_spent must be a finite number >= 0")
        return kind

    def _submit(self, c: sa.Connection, annotator: str, req: labels_pb2.SubmitLabelRequest, kind: str,
                previous_first: bool = False) -> labels_pb2.SubmitLabelResponse:
        """Close the caller's live lease and record the answer, or answer a resend from its idempotency key.

        Closing the lease is the common case's only check: it fails for a resend
        (the lease is already answered) and for every bad lease, told apart afterwards.
        """
        label = req.label if kind == "class" else ""
        if not previous_first and (out := self._record(c, annotator, req, kind, label)) is not None:
            return out
        previous = c.execute(_PREVIOUS, {"who": annotator, "rid": req.request_id}).first()
        if previous is not None:
            return self._duplicate(c, previous, req, kind, label)
        if previous_first and (out := self._record(c, annotator, req, kind, label)) is not None:
            return out
        raise self._not_closed(c, annotator, req)

    def _record(self, c: sa.Connection, annotator: str, req: labels_pb2.SubmitLabelRequest, kind: str,
                label: str) -> labels_pb2.SubmitLabelResponse | None:
        """Close the caller's live lease, store the answer and count it; None (nothing changed)
        when the lease is not the caller's live lease for this frame."""
        now, skip, label_id = self.clock(), kind == "skip", uuid.uuid4().hex
        p = {"lid": req.lease_id, "who": annotator, "fid": req.frame_id, "now": now,
             "new_state": "skipped" if skip else "done",  # skipped keeps annotator_key: not offered again
             "answer": 0 if skip else 1, "drop": int(skip), **_values(
                 id=label_id, request_id=req.request_id, annotator=annotator, frame_id=req.frame_id,
                 lease_id=req.lease_id, kind=kind, label=label, seconds_spent=req.seconds_spent,
                 submitted_at=now, day=time.strftime("%Y-%m-%d", time.gmtime(now)))}
        if c.dialect.name == "postgresql":
            counted = c.execute(_CLOSE_LABEL_COUNT_PG, p).first()
        elif c.execute(_CLOSE_LEASE, p).rowcount == 1:
            c.execute(_INSERT_LABEL, p)
            counted = c.execute(_COUNT, p).first()
        else:
            counted = None
        if counted is None:
            return None
        events = [(topics.LABELS_SUBMITTED, req.frame_id, events_pb2.LabelSubmitted(
            label_id=label_id, frame_id=req.frame_id, annotator=annotator, kind=KIND_ENUM[kind], label=label,
            request_id=req.request_id, submitted_at=_ts(now), seconds_spent=req.seconds_spent))]
        resolved = None
        if not skip:
            resolved = self._decide(c, req.frame_id, *counted, label if kind == "class" else None)
        if resolved is not None:
            events.append((topics.LABELS_RESOLVED, req.frame_id, resolved))
        enqueue(c, events)
        return labels_pb2.SubmitLabelResponse(label_id=label_id, duplicate=False, resolved=resolved is not None)

    @staticmethod
    def _duplicate(c: sa.Connection, previous: sa.Row, req: labels_pb2.SubmitLabelRequest, kind: str,
                   label: str) -> labels_pb2.SubmitLabelResponse:
        if (previous.frame_id, previous.kind, previous.label) != (req.frame_id, kind, label):
            raise InvalidArgument(f"request_id {req.request_id!r} was already used for a different answer")
        DUPLICATES.inc()
        status = c.execute(_FRAME_STATUS, {"fid": previous.frame_id}).scalar()
        return labels_pb2.SubmitLabelResponse(label_id=previous.id, duplicate=True,
                                              resolved=status == "resolved")

    @staticmethod
    def _not_closed(c: sa.Connection, annotator: str, req: labels_pb2.SubmitLabelRequest) -> ServiceError:
        """Why the lease could not take this answer, exactly."""
        lease = c.execute(_LEASE, {"lid": req.lease_id}).first()
        if (lease is None or lease.frame_id != req.frame_id) and \
                c.execute(_FRAME_STATUS, {"fid": req.frame_id}).first() is None:
            return NotFound(f"unknown frame {req.frame_id!r}")
        if lease is None:
            return NotFound(f"unknown lease {req.lease_id!r}")
        if lease.annotator != annotator:
            return PermissionDenied("this lease belongs to another annotator")
        if lease.frame_id != req.frame_id:
            return InvalidArgument(f"lease {req.lease_id!r} is for frame {lease.frame_id!r}, not {req.frame_id!r}")
        if lease.state in ("done", "skipped"):
            return FailedPrecondition("this lease was already answered with another request_id")
        if lease.state == "released":
            return FailedPrecondition("this lease was released; ask NextTask for a new task")
        return FailedPrecondition(f"lease expired at {_iso(lease.expires_at)}: the frame went back to the "
                                  "pool and the answer was not recorded; ask NextTask for a new task")

    def _decide(self, c: sa.Connection, frame_id: str, answers: int, required: int | None,
                vote: str | None) -> events_pb2.LabelResolved | None:
        """After a class/unsure answer (``vote`` None = unsure): at the required number of answers
        decide consensus (returns the labels.resolved event) or adjudication."""
        if answers < (required or 1):
            return None
        if answers == 1:  # this is the frame's only answer: no need to read it back
            votes = [vote]
        else:
            votes = [lab if k == "class" else None for k, lab in c.execute(_VOTES, {"fid": frame_id})]
        outcome = consensus(votes)
        if outcome.resolved:
            by = "single" if outcome.answers == 1 else "consensus"
            return self._resolve(c, frame_id, outcome.label, by, outcome.votes, outcome.answers)
        c.execute(_TO_ADJUDICATION, {"fid": frame_id, "reason": outcome.reason})
        log.info("frame needs adjudication", extra={"frame_id": frame_id, "reason": outcome.reason})
        return None

    def _resolve(self, c: sa.Connection, frame_id: str, label: str, by: str, votes: int, answers: int,
                 request_id: str = "") -> events_pb2.LabelResolved:
        """Make the label final with the next sequence number; returns the labels.resolved event
        for the caller to enqueue in the same transaction.

        The counter row is locked until commit, so sequences commit in order and a
        reader paging by ``after_sequence`` never skips a late-committing row.
        """
        now = self.clock()
        p = {"fid": frame_id, "label": label, "by": by, "votes": votes, "now": now, "rid": request_id}
        if c.dialect.name == "postgresql":
            seq = c.execute(_RESOLVE_PG, p).scalar_one()
        else:
            seq = c.execute(_RESOLVE, {**p, "seq": c.execute(_NEXT_SEQ).scalar_one()}).scalar_one()
        RESOLVED.labels("reviewer" if by not in ("single", "consensus") else by).inc()
        return events_pb2.LabelResolved(frame_id=frame_id, label=label, votes=votes, annotations=answers,
                                        resolved_by=by, resolved_at=_ts(now), sequence=seq)

    # -- review ----------------------------------------------------------------
    def list_adjudications(self, limit: int) -> list[labels_pb2.Adjudication]:
        limit = 50 if limit <= 0 else min(limit, 500)
        with self.db.read() as s:
            frames = list(s.scalars(sa.select(m.Frame).where(m.Frame.status == "adjudication")
                                    .order_by(m.Frame.id).limit(limit)))
            answers = s.execute(sa.select(m.Label.frame_id, m.Label.annotator, m.Label.kind, m.Label.label)
                                .where(m.Label.frame_id.in_([f.frame_id for f in frames]),
                                       m.Label.kind != "skip").order_by(m.Label.submitted_at)).all()
        items = {f.frame_id: labels_pb2.Adjudication(frame_id=f.frame_id, reason=f.adjudication_reason,
                                                     frame=frame_meta(f)) for f in frames}
        for frame_id, annotator, kind, label in answers:
            item = items[frame_id]
            item.annotators.append(annotator)
            if kind == "class":
                item.votes[label] += 1
            else:
                item.unsure += 1
        return [items[f.frame_id] for f in frames]

    def adjudicate(self, reviewer: str, frame_id: str, label: str, request_id: str) -> bool:
        project = self.project()
        if label not in project.class_names:
            raise InvalidArgument(f"label {label!r} is not in the class set {list(project.class_names)}")

        def tx(s: Session) -> bool:
            frame = s.scalar(sa.select(m.Frame).where(m.Frame.frame_id == frame_id).with_for_update())
            if frame is None:
                raise NotFound(f"unknown frame {frame_id!r}")
            if frame.status == "resolved":
                if request_id and frame.resolved_request_id == request_id:
                    return True  # a retried Adjudicate: already done
                raise FailedPrecondition(f"frame {frame_id!r} is already resolved as {frame.resolved_label!r} "
                                         f"by {frame.resolved_by}")
            if frame.status != "adjudication":
                raise FailedPrecondition(f"frame {frame_id!r} is not waiting for adjudication")
            agree = s.scalar(sa.select(sa.func.count()).select_from(m.Label)
                             .where(m.Label.frame_id == frame_id, m.Label.kind == "class",
                                    m.Label.label == label)) or 0
            resolved = self._resolve(s.connection(), frame_id, label, reviewer, agree, frame.answers, request_id)
            enqueue(s.connection(), [(topics.LABELS_RESOLVED, frame_id, resolved)])
            return True
        out = self.db.write(tx)
        self.notify()
        return out
