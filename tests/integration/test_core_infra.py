"""The shared core against the real stand-ins: SeaweedFS and tansu."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaConsumer

from lumenal.core import events, topics
from lumenal.core.errors import NotFound
from lumenal.v1 import common_pb2, events_pb2

pytestmark = pytest.mark.integration


def test_object_store_roundtrip_and_presign(object_store, unique):
    import urllib.request

    key = f"t/{unique}.bin"
    object_store.put_bytes("lumenal-frames", key, b"hello", "text/plain", {"video": "v1"})
    assert object_store.get_bytes("lumenal-frames", key) == b"hello"
    assert object_store.exists("lumenal-frames", key)
    assert key in list(object_store.list_keys("lumenal-frames", "t/"))
    with urllib.request.urlopen(object_store.presigned_get("lumenal-frames", key, 60)) as r:
        assert r.read() == b"hello"
    with pytest.raises(NotFound):
        object_store.get_bytes("lumenal-frames", f"t/{unique}.missing")


def _drain_dlq(bootstrap: str, group: str, timeout_s: float = 20) -> list[events_pb2.DeadLetter]:
    c = KafkaConsumer(topics.DEAD_LETTER, bootstrap_servers=bootstrap, group_id=f"dlq-{group}",
                      auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000)
    out, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            out += [events_pb2.DeadLetter.FromString(r.value) for r in recs]
        if any(d.consumer_group == group for d in out):
            break
    c.close()
    return [d for d in out if d.consumer_group == group]


def test_consumer_commits_handles_and_dead_letters(kafka_server, unique):
    topic = f"frames.test.{unique}"
    events.ensure_topics(kafka_server, {topic: 2, topics.DEAD_LETTER: 1})
    pub = events.Publisher(kafka_server)
    seen: list[str] = []
    done = threading.Event()

    def handle(msg: events_pb2.FramesIngested, rec: events.Record) -> None:
        if msg.video_id == "poison":
            raise events.PoisonMessage("video id is poison")
        seen.append(msg.video_id)
        if len(seen) == 3:
            done.set()

    for vid in ("a", "poison", "b"):
        pub.publish(topic, events_pb2.FramesIngested(video_id=vid, frames=[common_pb2.FrameMeta(frame_id=f"{vid}:0")]), vid)
    pub._producer.send(topic, value=b"\xff\xff not protobuf", key=b"bad")
    pub.publish(topic, events_pb2.FramesIngested(video_id="c"), "c")
    pub.flush()
    group = f"g-{unique}"
    consumer = events.Consumer(kafka_server, group, {topic: (events_pb2.FramesIngested, handle)}, pub,
                               session_timeout_ms=6000).start()
    assert done.wait(40), f"handled only {seen}"
    consumer.stop()
    assert sorted(seen) == ["a", "b", "c"]
    letters = _drain_dlq(kafka_server, group)
    errors = sorted(d.error.split(":")[0] for d in letters)
    assert errors == ["poison", "undecodable lumenal.v1.FramesIngested"], errors

    # Offsets were committed: a new member of the same group sees nothing again.
    again: list[str] = []
    c2 = events.Consumer(kafka_server, group, {topic: (events_pb2.FramesIngested,
                                                       lambda m, r: again.append(m.video_id))}, pub,
                         session_timeout_ms=6000).start()
    time.sleep(6)
    c2.stop()
    assert again == []
    pub.close()
