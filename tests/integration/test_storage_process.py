"""The real ``python -m lumenal.storage`` process, the ``lumenal ingest`` CLI, and a broker restart."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest
from test_storage_support import SECRET, collect, md, need_vtest, stub

from lumenal.core import grpc_server
from lumenal.core.objectstore import BROKER_BUCKET
from lumenal.demo import synthetic
from lumenal.stack import infra
from lumenal.stack.processes import ManagedProcess, free_port, port_open
from lumenal.storage import cli
from lumenal.v1 import storage_pb2

pytestmark = pytest.mark.integration


def _storage_process(env: dict[str, str], log_dir: Path, root: Path) -> tuple[ManagedProcess, int, int]:
    port, metrics = free_port(), free_port()
    proc = ManagedProcess("storage", [sys.executable, "-m", "lumenal.storage"], log_dir / f"storage-{port}.log",
                          env={**env, "LUMENAL_STORAGE_ADDR": f"127.0.0.1:{port}",
                               "LUMENAL_STORAGE_METRICS_PORT": str(metrics), "LUMENAL_AUTH_SECRET": SECRET,
                               "LUMENAL_STORAGE_INGEST_ROOTS": f"{root}:/usr/share/doc/opencv-doc"},
                          ready=lambda: port_open(port)).start().wait_ready(60)
    try:
        grpc_server.wait_healthy(f"127.0.0.1:{port}", 60)
    except TimeoutError:
        proc.stop()
        raise
    return proc, port, metrics


def _ingest(monkeypatch, port: int, *args: str) -> int:
    monkeypatch.setenv("LUMENAL_STORAGE_ADDR", f"127.0.0.1:{port}")
    monkeypatch.setenv("LUMENAL_AUTH_SECRET", SECRET)
    monkeypatch.delenv("LUMENAL_TOKEN", raising=False)
    return cli.main(list(args))


def test_cli_against_the_real_process_and_restart(stack_infra, tmp_path, monkeypatch, capsys, unique):
    demo = synthetic.generate(tmp_path / "demo", frames=200, seed=9, size=64)
    proc, port, metrics = _storage_process(stack_infra.env(), tmp_path, tmp_path)
    try:
        vid = f"cli-{unique}"
        assert _ingest(monkeypatch, port, str(demo.video), "--ground-truth", str(demo.ground_truth),
                       "--video-id", vid, "--fps", "-1") == 0
        out = capsys.readouterr().out
        assert f"video {vid}: 200 frames read" in out
        assert _ingest(monkeypatch, port, str(need_vtest()), "--upload", "--video-id", f"up-{unique}") == 0
        assert "795 frames read" in capsys.readouterr().out
        # Again: nothing new, said so.
        assert _ingest(monkeypatch, port, str(demo.video), "--ground-truth", str(demo.ground_truth),
                       "--video-id", vid, "--fps", "-1") == 0
        assert "already ingested" in capsys.readouterr().out
        assert _ingest(monkeypatch, port, "/etc/hostname", "--video-id", f"x-{unique}") == 1
        assert "outside the allowed ingest roots" in capsys.readouterr().err
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics") as r:
            text = r.read().decode()
        assert 'lumenal_storage_frames_total{outcome="stored"}' in text
        assert 'lumenal_grpc_requests_total{code="OK",method="IngestPath",service="storage"}' in text
    finally:
        proc.stop()
    assert proc.returncode() == 0, proc.log_tail()
    # A new process finds everything again from S3.
    proc, port, _ = _storage_process(stack_infra.env(), tmp_path, tmp_path)
    try:
        ch, s = stub(port)
        videos = {v.video_id: v for v in s.ListVideos(storage_pb2.ListVideosRequest(), metadata=md()).videos}
        assert videos[vid].complete and videos[vid].frames_decoded == 200
        assert videos[f"up-{unique}"].complete and videos[f"up-{unique}"].frames_decoded == 795
        ch.close()
    finally:
        proc.stop()
    # And the CLI explains a service that is down.
    assert _ingest(monkeypatch, port, str(demo.video)) == 1
    err = capsys.readouterr().err
    assert "not reachable" in err and "lumenal up" in err


def test_no_published_event_is_lost_across_a_broker_restart(stack_infra, object_store, tmp_path, unique):
    """tansu on s3:// storage: stop it after an ingest, start it again, read every batch back."""
    object_store.ensure_bucket(BROKER_BUCKET)
    kafka_port = free_port()
    broker = infra.tansu(kafka_port, tmp_path, f"s3://{BROKER_BUCKET}/", stack_infra.s3).start().wait_ready(30)
    env = {**stack_infra.env(), "LUMENAL_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}"}
    demo = synthetic.generate(tmp_path / "demo", frames=150, seed=10, size=64)
    proc = None
    try:
        proc, port, _ = _storage_process(env, tmp_path, tmp_path)
        ch, s = stub(port)
        vid = f"durable-{unique}"
        last = list(s.IngestPath(storage_pb2.IngestPathRequest(path=str(demo.video), options=storage_pb2.IngestOptions(
            video_id=vid, sample_fps=-1, dedup_threshold=-1, batch_size=10)), metadata=md()))[-1]
        ch.close()
        assert last.done and last.batches_published >= 10
        broker.stop()
        assert not broker.alive()
        broker = infra.tansu(kafka_port, tmp_path, f"s3://{BROKER_BUCKET}/", stack_infra.s3).start().wait_ready(30)
        events = collect(f"127.0.0.1:{kafka_port}", vid, last.frames_stored, timeout_s=90)
        assert len(events) == last.batches_published
        assert sorted(f.frame_index for e in events for f in e.frames) == sorted(
            {f.frame_index for e in events for f in e.frames})
        assert sum(len(e.frames) for e in events) == last.frames_stored
    finally:
        if proc is not None:
            proc.stop()
        broker.stop()
