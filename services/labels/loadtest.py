"""Simulated annotators against a real labels server process: correctness under load and latency.

``python -m lumenal.labels.loadtest --db-url URL`` seeds users and frames into
the database, starts ``python -m lumenal.labels`` on free ports, runs N
annotator threads (each with its own gRPC channel) that pull a task, answer
it (now and then skipping or re-sending the same request), and prints the
p50/p95 latency of NextTask+SubmitLabel plus the invariant checks as JSON.
The integration tests reuse ``seed``, ``run_annotators`` and ``check``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import sqlalchemy as sa

from lumenal.core import auth, grpc_server
from lumenal.labels import models as m
from lumenal.labels.accounts import Accounts
from lumenal.labels.db import Database
from lumenal.labels.tasks import Tasks
from lumenal.v1 import common_pb2, labels_pb2, labels_pb2_grpc

PASSWORD = "load-test-pw"


@dataclass
class Outcome:
    """What the clients saw; ``check`` compares it with the database."""

    latencies_ms: list[float] = field(default_factory=list)
    later_ms: list[float] = field(default_factory=list)  # without each annotator's first pair (the start burst)
    tasks: list[tuple[str, str, str]] = field(default_factory=list)  # annotator, frame, lease
    accepted: dict[str, str] = field(default_factory=dict)          # label_id -> annotator
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def seed(db_url: str, annotators: int, frames: int, classes: list[str], settings) -> list[str]:  # noqa: ANN001
    """Create the annotators and the frame pool directly in the database (server not needed)."""
    db = Database(db_url, pool_size=2)
    try:
        db.migrate()
        tasks = Tasks(db, None, settings)
        tasks.ensure_defaults()
        accounts = Accounts(db, settings.auth_secret, 3600)
        names = [f"annotator{i:02d}" for i in range(annotators)]
        for name in names:
            accounts.create(name, PASSWORD, auth.ANNOTATOR)
        tasks.add_frames(common_pb2.FrameMeta(frame_id=f"load:{i:06d}", video_id="load", frame_index=i)
                         for i in range(frames))
    finally:
        db.dispose()
    return names


def _annotate(target: str, name: str, classes: list[str], out: Outcome, rng: random.Random,
              skip_p: float, dup_p: float, think_s: float, ready: threading.Barrier) -> None:
    with grpc.insecure_channel(target) as ch:
        stub = labels_pb2_grpc.LabelsServiceStub(ch)
        try:
            token = stub.Login(labels_pb2.LoginRequest(username=name, password=PASSWORD), timeout=300).token
            ready.wait(timeout=600)  # logins (argon2: slow and memory-hard by design) stay out of the measurement
        except (grpc.RpcError, threading.BrokenBarrierError) as exc:
            ready.abort()  # release the others: the run reports the error instead of hanging
            with out.lock:
                out.errors.append(f"{name} could not start: {exc}")
            return
        md = auth.metadata(token)
        idle, first_done = 0, False
        while idle < 3:  # others may still skip frames back into the pool: look again briefly
            start = time.perf_counter()
            try:
                task = stub.NextTask(labels_pb2.NextTaskRequest(), metadata=md, timeout=30)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    with out.lock:
                        out.errors.append(f"{name} NextTask {exc.code().name}: {exc.details()}")
                idle += 1
                time.sleep(0.2)
                continue
            idle = 0
            skip = rng.random() < skip_p
            req = labels_pb2.SubmitLabelRequest(
                request_id=f"{name}-{task.lease_id}", lease_id=task.lease_id, frame_id=task.frame_id,
                kind=common_pb2.LABEL_KIND_SKIP if skip else common_pb2.LABEL_KIND_CLASS,
                label="" if skip else rng.choice(classes), seconds_spent=rng.uniform(1, 5))
            try:
                resp = stub.SubmitLabel(req, metadata=md, timeout=30)
                elapsed = (time.perf_counter() - start) * 1000
                again = stub.SubmitLabel(req, metadata=md, timeout=30) if rng.random() < dup_p else None
            except grpc.RpcError as exc:
                with out.lock:
                    out.errors.append(f"{name} SubmitLabel {exc.code().name}: {exc.details()}")
                continue
            with out.lock:
                out.latencies_ms.append(elapsed)
                if first_done:
                    out.later_ms.append(elapsed)
                out.tasks.append((name, task.frame_id, task.lease_id))
                out.accepted[resp.label_id] = name
                if again is not None:
                    out.duplicates += 1
                    if not again.duplicate or again.label_id != resp.label_id:
                        out.errors.append(f"{name} duplicate submit was counted twice")
            first_done = True
            if think_s > 0:  # looking at the next frame (mean think_s)
                time.sleep(rng.uniform(0, 2 * think_s))


def run_annotators(target: str, names: list[str], classes: list[str], skip_p: float = 0.05,
                   dup_p: float = 0.1, seed_: int = 0, think_s: float = 0.0,
                   on_start: Callable[[], None] = lambda: None) -> Outcome:
    """Run one thread per annotator until no frame is left; ``think_s`` = mean pause per frame.

    ``on_start`` runs once when every annotator has logged in, as the measured part begins.
    """
    out = Outcome()
    ready = threading.Barrier(len(names), action=on_start)
    threads = [threading.Thread(target=_annotate, args=(target, n, classes, out, random.Random(seed_ + i),
                                                        skip_p, dup_p, think_s, ready), name=n)
               for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def check(db_url: str, out: Outcome) -> dict:
    """Invariants: no frame leased twice (overlap: distinct annotators, <= k), no label lost, counters exact."""
    db = Database(db_url, pool_size=2)
    try:
        with db.read() as s:
            leases = s.execute(sa.select(m.Lease.frame_id, m.Lease.annotator, m.Lease.state)).all()
            frames = {f.frame_id: f for f in s.scalars(sa.select(m.Frame))}
            labels = {lab.id: lab for lab in s.scalars(sa.select(m.Label))}
            seqs = sorted(s.scalars(sa.select(m.Frame.resolved_seq).where(m.Frame.resolved_seq.is_not(None))))
    finally:
        db.dispose()
    problems = list(out.errors)
    by_frame: dict[str, list[str]] = defaultdict(list)
    for frame_id, annotator, _ in leases:
        by_frame[frame_id].append(annotator)
    for frame_id, holders in by_frame.items():
        required = frames[frame_id].required or 1
        if len(set(holders)) != len(holders):
            problems.append(f"{frame_id} leased twice to one annotator")
        if required == 1 and len(holders) > 1 and not _skipped_before(labels, frame_id, len(holders)):
            problems.append(f"{frame_id} (no overlap) leased to {holders}")
    lost = set(out.accepted) - set(labels)
    if lost:
        problems.append(f"{len(lost)} accepted labels missing from the database")
    if len(labels) != len(out.accepted):
        problems.append(f"database has {len(labels)} labels, clients had {len(out.accepted)} accepted")
    for f in frames.values():
        answered = sum(1 for lab in labels.values() if lab.frame_id == f.frame_id and lab.kind != "skip")
        if f.answers != answered or f.held != answered:
            problems.append(f"{f.frame_id}: answers={f.answers} held={f.held}, labels say {answered}")
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append("resolved sequence has gaps or duplicates")
    lat = np.array(out.latencies_ms) if out.latencies_ms else np.array([np.nan])
    return {"problems": problems, "tasks": len(out.tasks), "labels": len(labels), "duplicates": out.duplicates,
            "frames": len(frames), "overlap_frames": sum(1 for f in frames.values() if (f.required or 1) > 1),
            "resolved": len(seqs), "adjudication": sum(f.status == "adjudication" for f in frames.values()),
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "max_ms": float(lat.max()),
            # All annotators start at once on a cold server: their first pairs queue behind each other.
            "p95_after_first_ms": float(np.percentile(out.later_ms, 95)) if out.later_ms else float("nan")}


def _skipped_before(labels: dict, frame_id: str, holders: int) -> bool:
    """A non-overlap frame may be leased again only after each earlier holder skipped it."""
    skips = sum(1 for lab in labels.values() if lab.frame_id == frame_id and lab.kind == "skip")
    return skips >= holders - 1


def start_server(db_url: str, env: dict[str, str], log_dir: Path):  # noqa: ANN201 - ManagedProcess
    from lumenal.stack.processes import ManagedProcess, free_port
    port = free_port()
    proc = ManagedProcess("labels", [sys.executable, "-m", "lumenal.labels"], log_dir / "labels.log",
                          env={**env, "LUMENAL_DB_URL": db_url, "LUMENAL_LABELS_ADDR": f"127.0.0.1:{port}",
                               "LUMENAL_LABELS_METRICS_PORT": str(free_port())})
    proc.ready = lambda: _healthy(f"127.0.0.1:{port}")
    return proc.start().wait_ready(60), f"127.0.0.1:{port}"


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (Linux /proc): load-independent cost per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _healthy(target: str) -> bool:
    grpc_server.wait_healthy(target, timeout_s=1)
    return True


def main(argv: list[str] | None = None) -> int:
    from lumenal.core.config import from_env
    from lumenal.labels.settings import LabelsSettings
    from lumenal.stack.processes import free_port

    p = argparse.ArgumentParser(prog="python -m lumenal.labels.loadtest", description=__doc__)
    p.add_argument("--db-url", default="", help="default: a fresh SQLite file in a temp folder")
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--overlap", type=float, default=0.2)
    p.add_argument("--think-s", type=float, default=0.0,
                   help="mean pause per frame (0 = back-to-back requests: a saturation test)")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lumenal-labels-load-"))
    db_url = args.db_url or f"sqlite:///{tmp}/labels.db"
    env = {"LUMENAL_AUTH_SECRET": "load-test-secret", "LUMENAL_LABELS_OVERLAP_FRACTION": str(args.overlap),
           "LUMENAL_LABELS_OVERLAP_K": "3", "LUMENAL_LABELS_CONSUME_FRAMES": "false",
           "LUMENAL_LABELS_PUBLISH_EVENTS": "false",
           "LUMENAL_INFERENCE_ADDR": f"127.0.0.1:{free_port()}"}  # nothing there: fallback ordering
    settings = from_env(LabelsSettings, environ=env)
    names = seed(db_url, args.annotators, args.frames, settings.class_list(), settings)
    proc, target = start_server(db_url, {**os.environ, **env}, tmp)
    started: list[float] = []  # wall clock and server CPU once the logins are done

    def on_start() -> None:
        started.extend([time.perf_counter(), cpu_seconds(proc.pid)])
    try:
        out = run_annotators(target, names, settings.class_list(), think_s=args.think_s, on_start=on_start)
        t0, cpu0 = started or (time.perf_counter(), cpu_seconds(proc.pid))  # empty: the start failed
        wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
    finally:
        proc.stop()
    report = check(db_url, out)
    report.update({"db": db_url.split(":", 1)[0], "annotators": args.annotators, "think_s": args.think_s,
                   "wall_s": round(wall, 2),
                   "pairs_per_s": round(len(out.latencies_ms) / wall, 1),
                   "server_cpu_ms_per_pair": round(1000 * cpu / max(1, len(out.latencies_ms)), 2),
                   "load_avg_1m": os.getloadavg()[0], "cpus": os.cpu_count()})
    print(json.dumps(report, indent=1))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
