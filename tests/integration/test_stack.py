"""``lumenal up/status/down`` as a user runs them: real processes, durable topics, clean stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from lumenal.core import events, topics
from lumenal.stack import infra, state
from lumenal.v1 import events_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def lumenal(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "LUMENAL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "lumenal.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _read_topic(bootstrap: str, topic: str, timeout_s: float = 20) -> list[bytes]:
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                      consumer_timeout_ms=3000)
    out, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline and not out:
        out += [r.value for recs in c.poll(timeout_ms=1000).values() for r in recs]
    c.close()
    return out


def test_up_status_down_keeps_topics_and_leaves_nothing_in_tmp(tmp_path: Path) -> None:
    home = tmp_path / "home"
    only = ["--only", "none"]  # infrastructure only: services have their own tests
    up = lumenal(home, "up", "--detach", "--free-ports", "--no-ui", *only)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        st = state.read(home)
        assert st and st["ready"] and {"s3", "kafka"} <= set(st["components"])
        status = lumenal(home, "status")
        assert status.returncode == 0 and "kafka" in status.stdout and "FAILING" not in status.stdout
        assert lumenal(home, "up", "--free-ports", *only).returncode == 1  # already running
        bootstrap = st["env"]["LUMENAL_KAFKA_BOOTSTRAP"]
        pub = events.Publisher(bootstrap)
        pub.publish_sync(topics.MODELS_PUBLISHED, events_pb2.ModelPublished(model_name="m", version=7), "m")
        pub.close()
        s3_port = st["components"]["s3"]["port"]
    finally:
        down = lumenal(home, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert state.read(home) is None and lumenal(home, "status").returncode == 3
    assert not [s for s in infra.leftover_weed_sockets() if f"-{s3_port}" in s or f"-{s3_port + 10000}" in s]

    # Same home again: the broker's s3:// storage kept the topic and its message.
    up = lumenal(home, "up", "--detach", "--no-ui", *only, "--free-ports")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        st = state.read(home)
        values = _read_topic(st["env"]["LUMENAL_KAFKA_BOOTSTRAP"], topics.MODELS_PUBLISHED)
        assert events_pb2.ModelPublished.FromString(values[0]).version == 7
    finally:
        assert lumenal(home, "down").returncode == 0


def test_sigterm_stops_a_foreground_stack(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "LUMENAL_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "lumenal.cli", "up", "--free-ports", "--no-ui",
                             "--only", "none"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (state.read(home) or {}).get("ready"):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.3)
    pids = [c["pid"] for c in state.read(home)["components"].values()]
    proc.terminate()
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "stopped." in out
    assert not any(state.pid_alive(p) for p in pids)
