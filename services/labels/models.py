"""SQLAlchemy models of the labels database.

Times are UNIX seconds (floats) so comparisons behave the same on SQLite and
PostgreSQL. Concurrency rules live in the schema where possible:

- ``frames.held`` counts the slots of a frame that are taken (active leases
  plus counted answers); a lease is granted only by the conditional update
  ``held = held + 1 WHERE held < required``, which is atomic on both engines.
- ``leases.annotator_key`` (``frame#annotator``, unique) stops one annotator
  holding or answering the same frame twice; ``leases.active_annotator``
  (unique) gives each annotator at most one active lease.
- ``labels`` is unique on ``(annotator, request_id)``: the idempotency key.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only


class Base(DeclarativeBase):
    pass


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    role: Mapped[str] = mapped_column(sa.String(16))
    password_hash: Mapped[str] = mapped_column(sa.String(300))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[float] = mapped_column(sa.Float)


class Session(Base):
    """A login; logout or deactivation revokes it, which the HMAC token alone cannot express."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), index=True)
    created_at: Mapped[float] = mapped_column(sa.Float)
    expires_at: Mapped[float] = mapped_column(sa.Float)
    revoked_at: Mapped[float | None] = mapped_column(sa.Float, nullable=True)


class Project(Base):
    """The single project row (id 1): class set and labeling policy."""

    __tablename__ = "project"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    class_names: Mapped[str] = mapped_column(sa.Text)  # JSON list
    strategy: Mapped[str] = mapped_column(sa.String(64), default="")
    overlap_fraction: Mapped[float] = mapped_column(sa.Float)
    overlap_k: Mapped[int] = mapped_column(sa.Integer)
    hide_predictions: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    lease_ttl_s: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[float] = mapped_column(sa.Float)
    updated_by: Mapped[str] = mapped_column(sa.String(64), default="")


class Frame(Base):
    """A frame from ``frames.ingested``: the candidate pool and the labeling state."""

    __tablename__ = "frames"
    __table_args__ = (sa.Index("ix_frames_status_id", "status", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)  # ingest order
    frame_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    video_id: Mapped[str] = mapped_column(sa.String(200), default="")
    frame_index: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    timestamp_s: Mapped[float] = mapped_column(sa.Float, default=0.0)
    object_key: Mapped[str] = mapped_column(sa.String(500), default="")
    width: Mapped[int] = mapped_column(sa.Integer, default=0)
    height: Mapped[int] = mapped_column(sa.Integer, default=0)
    content_type: Mapped[str] = mapped_column(sa.String(64), default="")
    ground_truth: Mapped[str] = mapped_column(sa.String(200), default="")
    source: Mapped[str] = mapped_column(sa.String(500), default="")
    ingested_at: Mapped[float] = mapped_column(sa.Float)
    # open -> (adjudication ->) resolved
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    required: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)  # answers needed; set at first lease
    held: Mapped[int] = mapped_column(sa.Integer, default=0)
    answers: Mapped[int] = mapped_column(sa.Integer, default=0)
    adjudication_reason: Mapped[str] = mapped_column(sa.String(32), default="")
    resolved_label: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    resolved_by: Mapped[str] = mapped_column(sa.String(64), default="")
    resolved_votes: Mapped[int] = mapped_column(sa.Integer, default=0)
    resolved_at: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    resolved_seq: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True, unique=True)
    resolved_request_id: Mapped[str] = mapped_column(sa.String(128), default="")


class Lease(Base):
    __tablename__ = "leases"
    __table_args__ = (sa.Index("ix_leases_state_expires", "state", "expires_at"),)
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    frame_id: Mapped[str] = mapped_column(sa.String(200), sa.ForeignKey("frames.frame_id"), index=True)
    annotator: Mapped[str] = mapped_column(sa.String(64), index=True)
    created_at: Mapped[float] = mapped_column(sa.Float)
    expires_at: Mapped[float] = mapped_column(sa.Float)
    # active -> done | skipped | released | expired
    state: Mapped[str] = mapped_column(sa.String(16), default="active")
    source: Mapped[str] = mapped_column(sa.String(16), default="")
    overlap: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    active_annotator: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, unique=True)
    annotator_key: Mapped[str | None] = mapped_column(sa.String(300), nullable=True, unique=True)
    score: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)  # serialized FrameScore


class Label(Base):
    """One annotator's answer (class, skip or unsure)."""

    __tablename__ = "labels"
    __table_args__ = (sa.UniqueConstraint("annotator", "request_id", name="uq_labels_annotator_request"),)
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    request_id: Mapped[str] = mapped_column(sa.String(128))
    annotator: Mapped[str] = mapped_column(sa.String(64), index=True)
    frame_id: Mapped[str] = mapped_column(sa.String(200), sa.ForeignKey("frames.frame_id"), index=True)
    lease_id: Mapped[str] = mapped_column(sa.String(40))
    kind: Mapped[str] = mapped_column(sa.String(8))  # class | skip | unsure
    label: Mapped[str] = mapped_column(sa.String(200), default="")
    seconds_spent: Mapped[float] = mapped_column(sa.Float, default=0.0)
    submitted_at: Mapped[float] = mapped_column(sa.Float)
    day: Mapped[str] = mapped_column(sa.String(10), index=True)  # UTC YYYY-MM-DD, for per-day stats


class Counter(Base):
    """Named counters; ``resolved`` hands out LabelResolved.sequence under a row lock."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class Outbox(Base):
    """Events committed with the change that caused them; a publisher thread drains them."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[float] = mapped_column(sa.Float)
