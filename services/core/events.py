"""Protobuf events on Kafka topics (kafka-python).

Delivery is at-least-once: a consumer commits an offset only after its
handler returned, i.e. after the effect is durable. Handlers must therefore
be idempotent. Messages that cannot be decoded, or whose handler raises
``PoisonMessage`` (or keeps failing), go to the dead-letter topic with the
error, so one bad event never blocks a partition. Transient failures
(a dependency is down) are retried with backoff without skipping anything.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter

from lumenal.core import topics
from lumenal.core.errors import Unavailable
from lumenal.v1 import events_pb2

log = logging.getLogger(__name__)

CONSUMED = Counter("lumenal_events_consumed_total", "events handled", ["topic", "group"])
DEAD = Counter("lumenal_events_dead_lettered_total", "events sent to the dead-letter topic", ["topic", "group"])
RETRIED = Counter("lumenal_events_retried_total", "event handler retries", ["topic", "group"])
PUBLISHED = Counter("lumenal_events_published_total", "events published", ["topic"])


class PoisonMessage(Exception):
    """The event is valid protobuf but can never be processed (bad content)."""


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying forever: a dependency is unreachable."""
    if isinstance(exc, Unavailable | ConnectionError | TimeoutError | KafkaError):
        return True
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return False


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class Publisher:
    """Keyed, acks=all producer of protobuf events."""

    def __init__(self, bootstrap: str, client_id: str = "lumenal") -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks="all",
                                       linger_ms=10, retries=10, batch_size=256 * 1024,
                                       max_request_size=16 * 1024 * 1024)

    def publish(self, topic: str, message: Message, key: str):  # noqa: ANN201 - kafka future
        PUBLISHED.labels(topic).inc()
        return self._producer.send(topic, value=message.SerializeToString(), key=key.encode())

    def publish_sync(self, topic: str, message: Message, key: str, timeout_s: float = 30) -> None:
        """Publish and wait for the broker's ack (the caller's effect depends on it)."""
        self.publish(topic, message, key).get(timeout=timeout_s)

    def flush(self, timeout_s: float = 30) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)


def ensure_topics(bootstrap: str, partitions: dict[str, int] | None = None, timeout_s: float = 30) -> None:
    """Create Lumenal's topics if missing (idempotent)."""
    partitions = topics.PARTITIONS if partitions is None else partitions
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lumenal-admin",
                                     request_timeout_ms=10000)
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, n, 1) for t, n in partitions.items() if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()


Handler = Callable[[Message, "Record"], None]


@dataclass(frozen=True)
class Record:
    """What a handler may need besides the decoded message."""

    topic: str
    partition: int
    offset: int
    key: str


@dataclass
class Consumer:
    """A consumer-group member that decodes, handles, commits, and dead-letters.

    ``handlers`` maps topic -> (protobuf message class, handler).
    """

    bootstrap: str
    group: str
    handlers: dict[str, tuple[type[Message], Handler]]
    publisher: Publisher
    session_timeout_ms: int = 10000
    max_attempts: int = 3
    max_poll_records: int = 50
    fetch_max_wait_ms: int = 500  # CommonSettings.kafka_fetch_max_wait_ms
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _consumer: KafkaConsumer | None = None
    connected: bool = False

    def _make(self) -> KafkaConsumer:
        return KafkaConsumer(*self.handlers, bootstrap_servers=self.bootstrap, group_id=self.group,
                             client_id=self.group, enable_auto_commit=False,
                             auto_offset_reset="earliest", session_timeout_ms=self.session_timeout_ms,
                             heartbeat_interval_ms=max(100, self.session_timeout_ms // 5),
                             max_poll_records=self.max_poll_records, max_poll_interval_ms=600000,
                             fetch_max_wait_ms=self.fetch_max_wait_ms)

    def start(self) -> Consumer:
        self._thread = threading.Thread(target=self.run, daemon=True, name=f"consumer-{self.group}")
        self._thread.start()
        return self

    def assigned_partitions(self, topic: str) -> set[int]:
        """Partitions of ``topic`` this member owns now (empty before joining the group)."""
        c = self._consumer
        try:
            return {tp.partition for tp in (c.assignment() if c is not None else ()) if tp.topic == topic}
        except Exception:  # noqa: BLE001 - the consumer is being rebuilt
            return set()

    def stop(self, timeout_s: float = 10) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout_s)

    def run(self) -> None:
        """Poll until stopped; reconnect with backoff when the broker is away."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._consumer = self._make()
                self.connected = True
                backoff = 0.5
                while not self._stop.is_set():
                    batches = self._consumer.poll(timeout_ms=500)
                    for tp, records in batches.items():
                        self._handle_partition(tp, records)
            except KafkaError as exc:
                self.connected = False
                log.warning("consumer error, reconnecting", extra={"group": self.group, "error": str(exc)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                if self._consumer is not None:
                    self._consumer.close(autocommit=False)
                    self._consumer = None
                self.connected = False

    def _handle_partition(self, tp: TopicPartition, records: list) -> None:
        msg_cls, handler = self.handlers[tp.topic]
        for rec in records:
            if not self._handle_record(tp, rec, msg_cls, handler):
                self._consumer.seek(tp, rec.offset)  # retry this record on the next poll
                return
            self._consumer.commit({tp: OffsetAndMetadata(rec.offset + 1, "", -1)})
            CONSUMED.labels(tp.topic, self.group).inc()

    def _handle_record(self, tp: TopicPartition, rec, msg_cls: type[Message], handler: Handler) -> bool:  # noqa: ANN001
        """True when the record is done (handled or dead-lettered)."""
        key = (rec.key or b"").decode(errors="replace")
        try:
            msg = msg_cls.FromString(rec.value or b"")
        except (DecodeError, RuntimeError) as exc:
            self._dead_letter(tp, rec, f"undecodable {msg_cls.DESCRIPTOR.full_name}: {exc}")
            return True
        attempts = 0
        while True:
            attempts += 1
            try:
                handler(msg, Record(tp.topic, tp.partition, rec.offset, key))
                return True
            except PoisonMessage as exc:
                self._dead_letter(tp, rec, f"poison: {exc}")
                return True
            except Exception as exc:  # noqa: BLE001 - decide retry vs dead-letter
                RETRIED.labels(tp.topic, self.group).inc()
                if is_transient(exc):
                    log.warning("transient handler failure, will retry",
                                extra={"topic": tp.topic, "offset": rec.offset, "error": str(exc)})
                    self._stop.wait(min(0.5 * 2 ** min(attempts, 4), 5))
                    return False
                if attempts >= self.max_attempts:
                    log.exception("handler failed %d times; dead-lettering", attempts)
                    self._dead_letter(tp, rec, f"handler failed {attempts}x: {type(exc).__name__}: {exc}")
                    return True
                self._stop.wait(0.2 * attempts)

    def _dead_letter(self, tp: TopicPartition, rec, error: str) -> None:  # noqa: ANN001
        DEAD.labels(tp.topic, self.group).inc()
        log.error("dead-lettering event", extra={"topic": tp.topic, "offset": rec.offset, "error": error})
        letter = events_pb2.DeadLetter(topic=tp.topic, partition=tp.partition, offset=rec.offset,
                                       key=rec.key or b"", value=rec.value or b"", error=error,
                                       consumer_group=self.group, failed_at=now_ts())
        self.publisher.publish_sync(topics.DEAD_LETTER, letter, (rec.key or b"").decode(errors="replace"))
