"""Transactional outbox: events are rows committed with the change that caused them.

A publisher thread sends pending rows to Kafka, waits for the broker's acks,
then deletes them. A crash between commit and publish loses nothing (the rows
are still there); a crash between publish and delete re-sends them, so
delivery is at-least-once and consumers are idempotent (key = frame id,
``LabelResolved.sequence`` orders resolutions).
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa
from google.protobuf.message import Message
from prometheus_client import Gauge

from lumenal.core import events
from lumenal.labels import models as m
from lumenal.labels.db import Database

log = logging.getLogger(__name__)

_INSERT = sa.insert(m.Outbox.__table__)
PENDING = Gauge("lumenal_labels_outbox_pending", "events committed but not yet acknowledged by Kafka")


class _Serialized:
    """An already-serialized event (what ``Publisher.publish`` needs from a message)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name
        return self.payload


def enqueue(conn: sa.Connection, events: list[tuple[str, str, Message]]) -> None:
    """Add (topic, key, message) events to the outbox inside the caller's transaction, in one statement."""
    now = time.time()
    conn.execute(_INSERT, [{"topic": topic, "key": key, "payload": message.SerializeToString(), "created_at": now}
                           for topic, key, message in events])


def pending(db: Database) -> int:
    with db.read() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(m.Outbox)) or 0


class OutboxPublisher:
    """Drains the outbox to Kafka in id order; reconnects with backoff when the broker is away."""

    def __init__(self, db: Database, bootstrap: str, interval_s: float = 0.2, batch: int = 200) -> None:
        self.db, self.bootstrap, self.interval_s, self.batch = db, bootstrap, interval_s, batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: events.Publisher | None = None

    def notify(self) -> None:
        """Something was committed: drain now instead of at the next tick."""
        self._wake.set()

    def start(self) -> OutboxPublisher:
        self._thread = threading.Thread(target=self._run, daemon=True, name="labels-outbox")
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout_s)
        if self._publisher is not None:
            self._publisher.close()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self._publisher is None:
                    events.ensure_topics(self.bootstrap, timeout_s=10)
                    self._publisher = events.Publisher(self.bootstrap, client_id="labels-outbox")
                while self.drain_once():
                    pass
                backoff = 0.5
                self._wake.wait(self.interval_s)
                self._wake.clear()
            except Exception as exc:  # noqa: BLE001 - broker away: keep rows, retry later
                log.warning("outbox publish failed; will retry", extra={"error": str(exc)})
                if self._publisher is not None:
                    self._publisher.close()
                    self._publisher = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)

    def drain_once(self) -> int:
        """Publish one batch and delete it after the acks; returns how many were sent."""
        with self.db.read() as s:
            rows = s.execute(sa.select(m.Outbox.id, m.Outbox.topic, m.Outbox.key, m.Outbox.payload)
                             .order_by(m.Outbox.id).limit(self.batch)).all()
            PENDING.set(s.scalar(sa.select(sa.func.count()).select_from(m.Outbox)) or 0)
        if not rows:
            return 0
        assert self._publisher is not None
        futures = [self._publisher.publish(topic, _Serialized(payload), key) for _, topic, key, payload in rows]
        for fut in futures:
            fut.get(timeout=30)
        ids = [r[0] for r in rows]
        self.db.write(lambda s: s.execute(sa.delete(m.Outbox).where(m.Outbox.id.in_(ids))))
        return len(rows)
