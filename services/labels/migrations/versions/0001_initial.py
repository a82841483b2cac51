"""Initial labels schema: annotators, sessions, project, frames, leases, labels, counters, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "annotators",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(300), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_table(
        "project",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("class_names", sa.Text, nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("overlap_fraction", sa.Float, nullable=False),
        sa.Column("overlap_k", sa.Integer, nullable=False),
        sa.Column("hide_predictions", sa.Boolean, nullable=False),
        sa.Column("lease_ttl_s", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "frames",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("frame_id", sa.String(200), nullable=False, unique=True),
        sa.Column("video_id", sa.String(200), nullable=False),
        sa.Column("frame_index", sa.BigInteger, nullable=False),
        sa.Column("timestamp_s", sa.Float, nullable=False),
        sa.Column("object_key", sa.String(500), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("ground_truth", sa.String(200), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("ingested_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("required", sa.Integer, nullable=True),
        sa.Column("held", sa.Integer, nullable=False),
        sa.Column("answers", sa.Integer, nullable=False),
        sa.Column("adjudication_reason", sa.String(32), nullable=False),
        sa.Column("resolved_label", sa.String(200), nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=False),
        sa.Column("resolved_votes", sa.Integer, nullable=False),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.Column("resolved_seq", sa.BigInteger, nullable=True, unique=True),
        sa.Column("resolved_request_id", sa.String(128), nullable=False),
    )
    op.create_index("ix_frames_status_id", "frames", ["status", "id"])
    op.create_table(
        "leases",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("frame_id", sa.String(200), sa.ForeignKey("frames.frame_id"), nullable=False, index=True),
        sa.Column("annotator", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("overlap", sa.Boolean, nullable=False),
        sa.Column("active_annotator", sa.String(64), nullable=True, unique=True),
        sa.Column("annotator_key", sa.String(300), nullable=True, unique=True),
        sa.Column("score", sa.LargeBinary, nullable=True),
    )
    op.create_index("ix_leases_state_expires", "leases", ["state", "expires_at"])
    op.create_table(
        "labels",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("annotator", sa.String(64), nullable=False, index=True),
        sa.Column("frame_id", sa.String(200), sa.ForeignKey("frames.frame_id"), nullable=False, index=True),
        sa.Column("lease_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("seconds_spent", sa.Float, nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("day", sa.String(10), nullable=False, index=True),
        sa.UniqueConstraint("annotator", "request_id", name="uq_labels_annotator_request"),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("outbox", "counters", "labels", "leases", "frames", "project", "sessions", "annotators"):
        op.drop_table(table)
