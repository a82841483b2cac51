"""Every replica's view of the whole pool, folded from Kafka topics.

Scoring is split across replicas by the ``inference`` consumer group, but
TopK must see every frame, so each replica also reads ALL partitions of
frames.ingested, frames.scored, labels.* and models.published without a
consumer group (plain assignment) and folds them into its ``PoolIndex``. The
offsets it has applied live in the index itself, so a snapshot and its
offsets are always consistent: a restart loads the snapshot and replays only
the tail, or replays from the beginning without one (the topics are the
source of truth; keep their retention unlimited).

An event the feed cannot decode or apply is dead-lettered (consumer group
``inference-pool:<instance>``) and skipped: a broadcast reader must never stall.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from google.protobuf.message import DecodeError, Message
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from lumenal.core import topics
from lumenal.core.events import Publisher, now_ts
from lumenal.v1 import common_pb2, events_pb2

from .pool import PoolIndex

log = logging.getLogger(__name__)

APPLIED = Counter("lumenal_inference_pool_events_total", "events folded into the pool index", ["topic"])
FEED_DEAD = Counter("lumenal_inference_pool_dead_lettered_total", "pool-feed events dead-lettered", ["topic"])
POOL_FRAMES = Gauge("lumenal_inference_pool_frames", "frames in the pool index")

TOPICS: dict[str, type[Message]] = {
    topics.FRAMES_INGESTED: events_pb2.FramesIngested,
    topics.FRAMES_SCORED: events_pb2.FramesScored,
    topics.LABELS_SUBMITTED: events_pb2.LabelSubmitted,
    topics.LABELS_RESOLVED: events_pb2.LabelResolved,
    topics.MODELS_PUBLISHED: events_pb2.ModelPublished,
}


def apply(pool: PoolIndex, topic: str, partition: int, msg: Message) -> None:
    """Fold one decoded event into ``pool`` (idempotent)."""
    if topic == topics.FRAMES_INGESTED:
        ids = [f.frame_id for f in msg.frames]
        if msg.aborted:
            pool.remove_frames(ids or pool.frames_of_video(msg.video_id))
        else:
            pool.add_frames(ids, partition)
    elif topic == topics.FRAMES_SCORED:
        if msg.model_name == pool.model_name:  # other models' scores share the topic
            pool.apply_scores(msg.model_version, list(msg.scores))
    elif topic == topics.LABELS_SUBMITTED:
        if msg.kind == common_pb2.LABEL_KIND_CLASS:
            pool.mark_labeled(msg.frame_id)
    elif topic == topics.LABELS_RESOLVED:
        pool.mark_labeled(msg.frame_id)
    elif topic == topics.MODELS_PUBLISHED and msg.model_name == pool.model_name and msg.version > 0:
        pool.set_target(msg.version)


class PoolFeed:
    """Reads every partition of the pool topics from the index's offsets and applies them."""

    def __init__(self, bootstrap: str, pool: PoolIndex, publisher: Publisher, instance: str,
                 on_model: Callable[[int], None] | None = None, fetch_max_wait_ms: int = 500) -> None:
        self.bootstrap = bootstrap
        self.pool = pool
        self.publisher = publisher
        self.group = f"inference-pool:{instance}"
        self.on_model = on_model
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.connected = False
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PoolFeed:
        self._thread = threading.Thread(target=self.run, daemon=True, name="inference-pool-feed")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def _assign(self, consumer: KafkaConsumer) -> set[TopicPartition]:
        tps = set()
        for topic in TOPICS:
            for p in consumer.partitions_for_topic(topic) or ():
                tps.add(TopicPartition(topic, p))
        consumer.assign(sorted(tps))
        for tp in tps:
            offset = self.pool.offsets.get(f"{tp.topic}:{tp.partition}")
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        return tps

    def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                         enable_auto_commit=False, client_id=self.group,
                                         max_partition_fetch_bytes=16 * 1024 * 1024,
                                         fetch_max_wait_ms=self.fetch_max_wait_ms)
                tps = self._assign(consumer)
                self.connected = True
                backoff = 0.5
                idle = 0
                while not self._stop.is_set():
                    batches = consumer.poll(timeout_ms=300, max_records=500)
                    for tp, records in batches.items():
                        for rec in records:
                            self._handle(tp, rec)
                    idle = 0 if batches else idle + 1
                    if not batches:
                        self.caught_up.set()
                        POOL_FRAMES.set(len(self.pool))
                    if idle and idle % 30 == 0 and len(self._assign_check(consumer)) != len(tps):
                        break  # a topic gained partitions: re-assign from our offsets
            except KafkaError as exc:
                log.warning("pool feed error, reconnecting", extra={"error": str(exc)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                self.connected = False
                if consumer is not None:
                    consumer.close()

    @staticmethod
    def _assign_check(consumer: KafkaConsumer) -> set[TopicPartition]:
        return {TopicPartition(t, p) for t in TOPICS for p in consumer.partitions_for_topic(t) or ()}

    def _handle(self, tp: TopicPartition, rec) -> None:  # noqa: ANN001 - kafka record
        key = f"{tp.topic}:{tp.partition}"
        try:
            msg = TOPICS[tp.topic].FromString(rec.value or b"")
        except (DecodeError, RuntimeError) as exc:
            self._dead_letter(tp, rec, f"undecodable {TOPICS[tp.topic].DESCRIPTOR.full_name}: {exc}")
            msg = None
        with self.pool.lock:
            if msg is not None:
                try:
                    apply(self.pool, tp.topic, tp.partition, msg)
                    APPLIED.labels(tp.topic).inc()
                except Exception as exc:  # noqa: BLE001 - never stall the broadcast reader
                    log.exception("pool feed could not apply event")
                    self._dead_letter(tp, rec, f"apply failed: {type(exc).__name__}: {exc}")
            self.pool.offsets[key] = rec.offset + 1
        if msg is not None and tp.topic == topics.MODELS_PUBLISHED and self.on_model:
            self.on_model(msg.version)

    def _dead_letter(self, tp: TopicPartition, rec, error: str) -> None:  # noqa: ANN001
        FEED_DEAD.labels(tp.topic).inc()
        log.error("dead-lettering pool event", extra={"topic": tp.topic, "offset": rec.offset, "error": error})
        letter = events_pb2.DeadLetter(topic=tp.topic, partition=tp.partition, offset=rec.offset,
                                       key=rec.key or b"", value=rec.value or b"", error=error,
                                       consumer_group=self.group, failed_at=now_ts())
        try:
            self.publisher.publish_sync(topics.DEAD_LETTER, letter, (rec.key or b"").decode(errors="replace"))
        except Exception:  # noqa: BLE001 - the log line above still records it
            log.exception("could not publish dead letter")
