"""``lumenal bench system``: throughput and latency of the real stack against the hardware's limit.

Every number comes from the real code paths, and each section reuses the measurement its
owning area wrote, so the bench and the area's own docs agree:

- ingest: ``lumenal.storage.bench`` (a real storage server on real S3 + Kafka) vs a plain
  PyAV decode of the same file;
- MC dropout: ``lumenal.ml.mcbench`` (the exported ``mc_dropout`` computation vs deterministic);
- TopK: ``lumenal.inference.bench`` (the real servicer over gRPC, 1,000,000 scored frames);
- annotators: ``lumenal.labels.loadtest`` (20 concurrent annotators against a real labels process);
- label-to-serving: ``lumenal.training.bench`` (the TRAINING area's measurement: an embedded
  stack, the 1,000th label triggers the retrain, then a probed second promotion);
- the loop: an embedded stack started here (``lumenal.stack.supervisor.Stack``: SeaweedFS, tansu,
  modelserver, storage, labels, inference, training as separate processes). A simulated oracle
  labels the SYNTHETIC demo video until the 1,000th label triggers a retrain
  (its own label-to-serving figure, as an extra), the pool re-score with the new version gives the pipeline's
  scoring throughput (compared with the same SavedModel called in-process), and a second
  promotion runs under a concurrent Predict probe (failed requests during the hot swap).

A section that cannot run (missing video, a service that fails) is reported with its error
and its keys are null: nothing is estimated or filled in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SECTIONS = ("ingest", "mc", "topk", "annotators", "training", "loop")
KEYS = ("ingest_ratio", "scoring_ratio", "mc_dropout_ratio", "topk_p95_ms", "nexttask_p95_ms",
        "label_to_serving_s", "swap_failed_requests")


# -- small infrastructure helpers ---------------------------------------------------------

@contextlib.contextmanager
def mini_infra(root: Path) -> Iterator[dict[str, str]]:
    """SeaweedFS + tansu (memory) on free ports, with buckets and topics; yields client env."""
    from lumenal.core import events
    from lumenal.core.config import CommonSettings, from_env
    from lumenal.core.objectstore import BUCKETS, ObjectStore
    from lumenal.stack import infra
    from lumenal.stack.processes import free_port, wait_for

    s3 = infra.S3Config(free_port(), "bench", "bench-" + secrets.token_hex(8))
    weed = infra.seaweed(root / "s3", root / "logs", s3).start()
    kport = free_port()
    kafka = None
    try:
        weed.wait_ready(120)
        env = {"LUMENAL_S3_ENDPOINT": s3.endpoint, "LUMENAL_S3_ACCESS_KEY": s3.access_key,
               "LUMENAL_S3_SECRET_KEY": s3.secret_key, "LUMENAL_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}",
               "LUMENAL_AUTH_SECRET": "bench-" + secrets.token_hex(8)}
        store = ObjectStore.from_settings(from_env(CommonSettings, environ=env))
        wait_for(store.healthy, 120, "seaweedfs s3", weed)
        for bucket in BUCKETS:
            store.ensure_bucket(bucket)
        kafka = infra.tansu(kport, root / "logs", "memory://tansu/").start().wait_ready(60)
        events.ensure_topics(env["LUMENAL_KAFKA_BOOTSTRAP"], timeout_s=60)
        yield env
    finally:
        if kafka is not None:
            kafka.stop()
        weed.stop()


def _timed_rate(fn: Callable[[], object], items: int, min_s: float = 3.0) -> float:
    """Items per second of ``fn`` (one warm-up call, then repeat for at least ``min_s``)."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            return calls * items / elapsed


# -- sections -------------------------------------------------------------------------------

def section_ingest(work: Path, video: Path | None) -> dict[str, object]:
    """IngestPath through a real storage server (gRPC, JPEG encode, S3 puts, events) vs PyAV decode."""
    from lumenal.core.config import from_env
    from lumenal.storage import bench as storage_bench
    from lumenal.storage.settings import StorageSettings

    synthetic = video is None
    if video is None:
        from lumenal.demo.synthetic import generate

        # The storage benchmark's reference: a 336x336 video (vtest.avi via --video).
        video = generate(work / "demo-ingest", frames=600, size=336).video
    with mini_infra(work / "ingest-infra") as env:
        settings = from_env(StorageSettings, environ=env)
        m = storage_bench.measure(settings, video, f"bench-{secrets.token_hex(4)}")
    return {"ingest_ratio": m["ratio"], "ingest": {**m, "video": str(video), "synthetic": synthetic}}


def section_mc(input_size: int = 64, batch: int = 64) -> dict[str, object]:
    """MC dropout T=20 (trunk once, head 20x) vs deterministic, in-process, default model."""
    from lumenal.ml import mcbench
    from lumenal.ml.model import ModelSpec

    spec = ModelSpec(class_names=("informative", "non_informative"), input_size=input_size, mc_samples=20)
    m = mcbench.measure(spec, batch=batch, repeats=10)
    return {"mc_dropout_ratio": m["mc_vs_deterministic"],
            "mc": {**m, "mc_samples": 20, "input_size": input_size, "batch": batch}}


def section_topk(frames: int, calls: int) -> dict[str, object]:
    """TopK(32) over gRPC on the real servicer with ``frames`` scored frames."""
    from lumenal.core.config import from_env
    from lumenal.inference import bench as inference_bench
    from lumenal.inference.settings import InferenceSettings

    default = from_env(InferenceSettings, environ={}).default_strategy
    strategies = tuple(dict.fromkeys((default, "margin", "entropy", "bald", "random")))
    m = inference_bench.measure(frames=frames, k=32, calls=calls, strategies=strategies)
    return {"topk_p95_ms": m[default]["p95_ms"], "topk": {**m, "default_strategy": default}}


def _annotators_once(work: Path, db_url: str, annotators: int, frames: int, think_s: float) -> dict:
    """One load test: a real labels process on ``db_url``, ``annotators`` threads."""
    from lumenal.core.config import from_env
    from lumenal.labels import loadtest
    from lumenal.labels.settings import LabelsSettings
    from lumenal.stack.processes import free_port

    env = {"LUMENAL_AUTH_SECRET": "bench-" + secrets.token_hex(8), "LUMENAL_LABELS_OVERLAP_FRACTION": "0.2",
           "LUMENAL_LABELS_OVERLAP_K": "3", "LUMENAL_LABELS_CONSUME_FRAMES": "false",
           "LUMENAL_LABELS_PUBLISH_EVENTS": "false", "LUMENAL_INFERENCE_ADDR": f"127.0.0.1:{free_port()}"}
    settings = from_env(LabelsSettings, environ=env)
    names = loadtest.seed(db_url, annotators, frames, settings.class_list(), settings)
    proc, target = loadtest.start_server(db_url, {**os.environ, **env}, work)
    try:
        start = time.perf_counter()
        out = loadtest.run_annotators(target, names, settings.class_list(), think_s=think_s)
        wall = time.perf_counter() - start
    finally:
        proc.stop()
    report = loadtest.check(db_url, out)
    report.update({"annotators": annotators, "db": db_url.split(":", 1)[0], "think_s": think_s,
                   "wall_s": wall, "pairs_per_s": len(out.latencies_ms) / wall})
    return report


@contextlib.contextmanager
def _scratch_postgres(admin_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server behind ``admin_url``, dropped afterwards."""
    import sqlalchemy as sa

    name = f"lumenal_bench_{secrets.token_hex(4)}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.execute(sa.text(f"CREATE DATABASE {name}"))
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with engine.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        engine.dispose()


def section_annotators(work: Path, annotators: int, frames: int, think_s: float,
                       pg_admin_url: str) -> dict[str, object]:
    """NextTask+SubmitLabel as the labels issue measures it - ``annotators`` people who look at
    each frame for ``think_s`` on average - on SQLite and on PostgreSQL (``nexttask_p95_ms`` is
    the worse of the two), plus a no-think-time run on SQLite for the saturation throughput."""
    work.mkdir(parents=True, exist_ok=True)
    runs = {"sqlite": _annotators_once(work / "sqlite", f"sqlite:///{work}/labels.db", annotators, frames, think_s)}
    if pg_admin_url:
        with _scratch_postgres(pg_admin_url) as url:
            runs["postgresql"] = _annotators_once(work / "pg", url.replace("postgresql://", "postgresql+psycopg://"),
                                                  annotators, frames, think_s)
    runs["sqlite_saturated"] = _annotators_once(work / "sat", f"sqlite:///{work}/sat.db", annotators, frames, 0.0)
    worst = max(r["p95_ms"] for name, r in runs.items() if name != "sqlite_saturated")
    return {"nexttask_p95_ms": worst, "annotators": runs}


# -- the loop on an embedded stack ------------------------------------------------------------

class RescoreWatch:
    """Times the pool re-score with a given model version, polling ``GetPoolStats`` in a thread.

    Started before the version can be published, so the first poll that sees the re-score
    running is within one poll interval of its start; the window ends at the first poll that
    sees the pool on the new version with no re-score left. Both ends count against the
    pipeline (poll interval 50 ms against a window of several seconds).
    """

    POLL_S = 0.05

    def __init__(self, stats: Callable[[], object], version: int, timeout_s: float) -> None:
        self.stats, self.version, self.timeout_s = stats, version, timeout_s
        self.window: tuple[float, float] = (0.0, 0.0)  # unix times of the first and last poll
        self._curve: list[tuple[float, int]] = []  # (s since the re-score was seen, frames done)
        self._frames = 0
        self._seconds = 0.0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="rescore-watch")

    def start(self) -> RescoreWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._poll()
        except BaseException as exc:  # noqa: BLE001 - re-raised in result()
            self._error = exc

    def _poll(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        start = None
        while time.monotonic() < deadline:
            ps = self.stats()
            now = time.perf_counter()
            if start is None and ps.rescore.running and ps.rescore.model_version == self.version:
                # Frames already scored when first seen (within one poll of the start) don't count.
                start, started_at, done0 = now, time.time(), int(ps.rescore.done)
                self._frames = int(ps.rescore.total) - done0
            if start is not None:
                finished = ps.model_version >= self.version and not ps.rescore.running
                done = self._frames if finished else int(ps.rescore.done) - done0
                self._curve.append((round(now - start, 3), done))
                if finished:
                    self._seconds, self.window = now - start, (started_at, time.time())
                    return
            elif ps.model_version >= self.version:
                raise RuntimeError("the re-score finished before it was seen running; pool too small to time")
            time.sleep(self.POLL_S)
        raise TimeoutError(f"pool re-score with v{self.version}: not done after {self.timeout_s:.0f}s")

    def result(self) -> tuple[int, float, list[tuple[float, int]]]:
        """(frames re-scored, seconds, progress curve); raises what the watch ran into."""
        self._thread.join(self.timeout_s)
        if self._error is not None:
            raise self._error
        if self._thread.is_alive() or not self._seconds:
            raise TimeoutError(f"pool re-score with v{self.version} not observed to finish")
        return self._frames, self._seconds, self._curve


class Loop:
    """An embedded stack in a temporary home, driven like ``lumenal demo --simulate-oracle``."""

    def __init__(self, home: Path, labels: int, video_frames: int, video_size: int, annotators: int,
                 timeout_s: float, frame_cache_mb: int | None = None) -> None:
        self.home, self.labels, self.video_frames, self.video_size = home, labels, video_frames, video_size
        self.annotators, self.timeout_s, self.frame_cache_mb = annotators, timeout_s, frame_cache_mb
        self.out: dict[str, object] = {}

    def run(self) -> dict[str, object]:
        from lumenal.core.config import from_env
        from lumenal.stack.supervisor import Stack, StackSettings

        settings = from_env(StackSettings, environ={"LUMENAL_STACK_BROKER_STORAGE": "memory"})
        stack = Stack(self.home, settings, free_ports=True, with_ui=False)
        # One retrain exactly at the N-th label; overlap off so N labels = N frames.
        stack.extra_env.update({"LUMENAL_TRAINING_RETRAIN_EVERY": str(self.labels),
                                "LUMENAL_TRAINING_MIN_INTERVAL_S": "0",
                                "LUMENAL_LABELS_OVERLAP_FRACTION": "0",
                                "LUMENAL_STORAGE_UPLOAD_WORKERS": "4"})
        if self.frame_cache_mb is not None:  # the service default otherwise
            stack.extra_env["LUMENAL_INFERENCE_FRAME_CACHE_MB"] = str(self.frame_cache_mb)
        self.out["frame_cache_mb"] = self.frame_cache_mb
        t0 = time.perf_counter()
        try:
            stack.start()
            self.out["stack_start_s"] = time.perf_counter() - t0
            self._drive(stack)
        finally:
            stack.stop()
        return self.out

    def _drive(self, stack: object) -> None:
        from lumenal.core.config import CommonSettings, from_env
        from lumenal.demo import loop as demo

        clients = demo.Clients(from_env(CommonSettings, environ=stack.client_env()))
        try:
            self._ingest(clients)
            oracle = demo.Oracle(clients, self.annotators).setup()
            self._first_model(clients, oracle)
            self._hot_swap(clients, oracle)
        finally:
            clients.close()

    def _ingest(self, clients: object) -> None:
        from lumenal.demo import loop as demo
        from lumenal.demo.synthetic import generate
        from lumenal.v1 import storage_pb2

        vid = generate(self.home / "video", frames=self.video_frames, size=self.video_size)
        options = storage_pb2.IngestOptions(filename=vid.video.name, video_id="bench-synthetic",
                                            sample_fps=-1, dedup_threshold=-2,
                                            ground_truth_csv_data=vid.ground_truth.read_bytes())
        start = time.perf_counter()
        updates = list(clients.storage.IngestVideo(demo._upload(vid.video, options), metadata=clients.md))
        last = updates[-1] if updates else None
        self.out["pool_frames"] = int(last.frames_stored) if last else 0
        self.out["video_ingest_fps"] = (last.frames_decoded / (time.perf_counter() - start)) if last else 0.0
        self.out["video"] = {"synthetic": True, "frames": self.video_frames, "size": self.video_size}
        self._wait(lambda: self._pool(clients).frames >= self.out["pool_frames"], "pool indexed")

    def _pool(self, clients: object) -> object:
        from lumenal.v1 import inference_pb2

        return clients.inference.GetPoolStats(inference_pb2.GetPoolStatsRequest(), metadata=clients.md,
                                              timeout=30)

    def _wait(self, check: Callable[[], bool], what: str, poll_s: float = 0.2) -> float:
        start = time.monotonic()
        while time.monotonic() - start < self.timeout_s:
            if check():
                return time.monotonic() - start
            time.sleep(poll_s)
        raise TimeoutError(f"{what}: not done after {self.timeout_s:.0f}s")

    def _first_model(self, clients: object, oracle: object) -> None:
        """Label until the N-th label triggers the first retrain; time it until v1 answers Predict."""
        from lumenal.demo import loop as demo
        from lumenal.ml.serving import ServingClient

        since = time.time()
        resolved = oracle.label(self.labels, progress=False)
        last_label = time.perf_counter()
        # Watch the pool from now on: the re-score starts as soon as v1 is published, which can be
        # before this thread has seen the training run end.
        watch = RescoreWatch(lambda: self._pool(clients), 1, self.timeout_s).start()
        self.out["labels_submitted"] = resolved
        settings = clients.settings
        with ServingClient(settings.modelserver_addr, timeout_s=10) as serving:
            def answers() -> bool:
                try:
                    return (serving.latest_version(settings.model_name) or 0) >= 1
                except Exception:  # noqa: BLE001 - no model yet
                    return False
            self._wait(answers, "first model served", poll_s=0.1)
        self.out["label_to_serving_observed_s"] = time.perf_counter() - last_label
        run = demo.wait_idle_after(clients, since, self.timeout_s)
        self.out["first_run"] = _run_dict(run)
        self.out["label_to_serving_s"] = run.metrics.get("label_to_serving_s")
        self._rescore(watch, run.version)

    def _rescore(self, watch: RescoreWatch, version: int) -> None:
        """Pipeline scoring rate: models.published -> re-score the pool through the modelserver."""
        if version != watch.version:
            raise RuntimeError(f"the retrain published v{version}, the watch expected v{watch.version}")
        frames, seconds, curve = watch.result()
        pipeline = frames / seconds
        raw = self._raw_scoring_rate(version)
        self.out["scoring"] = {"frames": frames, "seconds": seconds, "pipeline_fps": pipeline,
                               "raw_inprocess_fps": raw, "model_version": version,
                               "window_unix": list(watch.window), "progress": curve}
        self.out["scoring_ratio"] = pipeline / raw

    def _raw_scoring_rate(self, version: int) -> float:
        """The same SavedModel's scoring signature, in-process, same batch size as the service."""
        import tensorflow as tf

        from lumenal.core.config import from_env
        from lumenal.inference.settings import InferenceSettings

        inf = from_env(InferenceSettings, environ={})
        model = tf.saved_model.load(str(self.home / "models" / inf.model_name / str(version)))
        signature = "mc_dropout" if inf.mc and "mc_dropout" in model.signatures else "serving_default"
        fn = model.signatures[signature]
        shape = fn.structured_input_signature[1]["images"].shape
        batch = tf.constant(np.random.default_rng(0).random((inf.batch_size, *shape[1:]), dtype=np.float32))
        self.out.setdefault("scoring_signature", signature)
        # The best of three 2-second runs: the hardware's rate, least disturbed by whatever else
        # runs (single runs ranged 1,150-1,660 frames/s on one host). Higher raw = lower ratio.
        rates = [_timed_rate(lambda: fn(images=batch), inf.batch_size, min_s=2.0) for _ in range(3)]
        self.out["raw_inprocess_runs_fps"] = rates
        return max(rates)

    def _hot_swap(self, clients: object, oracle: object) -> None:
        """A second promotion under a concurrent Predict probe (no client retries)."""
        from lumenal.demo import loop as demo
        from lumenal.v1 import training_pb2

        settings = clients.settings
        probes = [demo.PredictProbe(settings.modelserver_addr, settings.model_name).start() for _ in range(4)]
        try:
            oracle.label(max(self.labels // 10, 50), progress=False)
            since = time.time()
            clients.training.TriggerRetrain(training_pb2.TriggerRetrainRequest(reason="bench hot swap"),
                                            metadata=clients.md, timeout=30)
            run = demo.wait_idle_after(clients, since, self.timeout_s)
            self.out["second_run"] = _run_dict(run)
            swapped = run.state == training_pb2.RUN_STATE_PROMOTED
            if not swapped:  # the gate kept the old model: swap in a copy as a new version instead
                self.out["swap_mode"] = "copied version (gate rejected the retrained model)"
                self._copy_version(settings.modelserver_addr, settings.model_name)
            else:
                self.out["swap_mode"] = "training promotion"
            time.sleep(3.0)  # keep probing after the swap completes
        finally:
            for p in probes:
                p.stop()
        failed = sum(p.failed for p in probes)
        self.out["swap"] = {"probes": len(probes), "ok": sum(p.ok for p in probes), "failed": failed,
                            "versions_seen": sorted(set().union(*(p.versions for p in probes))),
                            "errors": sorted({e for p in probes for e in p.errors})[:5]}
        self.out["swap_failed_requests"] = failed

    def _copy_version(self, addr: str, model_name: str) -> None:
        """A new version folder (atomic rename) holding the current weights: a pure serving swap."""
        import shutil

        from lumenal.ml.serving import ServingClient

        base = self.home / "models" / model_name
        versions = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
        new = versions[-1] + 1
        tmp = base / f".bench-{new}"
        shutil.copytree(base / str(versions[-1]), tmp)
        tmp.rename(base / str(new))
        with ServingClient(addr, timeout_s=10) as serving:
            self._wait(lambda: (serving.latest_version(model_name) or 0) >= new, f"v{new} served")


def _run_dict(run: object) -> dict[str, object]:
    from lumenal.v1 import training_pb2

    return {"run_id": run.run_id, "state": training_pb2.RunState.Name(run.state), "version": run.version,
            "labels": run.train_labels + run.val_labels, "duration_s": run.duration_s,
            "metrics": dict(run.metrics), "error": run.error}


def section_training(work: Path, labels: int) -> dict[str, object]:
    """The TRAINING area's own measurement (``lumenal.training.bench``): N-th label -> serving."""
    from lumenal.training import bench as training_bench

    work.mkdir(parents=True, exist_ok=True)
    result = training_bench.run([labels], work=work)["sizes"][str(labels)]
    if "error" in result:
        raise RuntimeError(result["error"])
    return {"label_to_serving_s": result["label_to_serving_s"], "training": result}


def section_loop(work: Path, labels: int, video_frames: int, video_size: int, annotators: int,
                 timeout_s: float, frame_cache_mb: int | None = None) -> dict[str, object]:
    """The whole loop with inference: pipeline scoring rate, plus its own latency and swap counts."""
    out = Loop(work / "stack", labels, video_frames, video_size, annotators, timeout_s, frame_cache_mb).run()
    return {"scoring_ratio": out.get("scoring_ratio"), "loop": out}


def swap_failures(doc: dict[str, object]) -> int | None:
    """Failed Predicts summed over every hot swap this run probed (training and loop sections)."""
    counts = [d["swap"]["failed"] for d in (doc.get("training"), doc.get("loop"))
              if isinstance(d, dict) and isinstance(d.get("swap"), dict)]
    return sum(counts) if counts else None


# -- command ----------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lumenal bench system", description=__doc__.splitlines()[0])
    p.add_argument("--only", help=f"comma list of sections (default all: {','.join(SECTIONS)})")
    p.add_argument("--video", type=Path, help="video for the ingest section (default: a 336x336 "
                                              f"SYNTHETIC demo video; e.g. {VTEST})")
    p.add_argument("--topk-frames", type=int, default=1_000_000)
    p.add_argument("--topk-calls", type=int, default=50)
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--annotator-frames", type=int, default=400)
    p.add_argument("--annotator-think-s", type=float, default=1.0,
                   help="mean seconds an annotator looks at a frame (0 = saturate the server)")
    p.add_argument("--pg-admin-url", default=os.environ.get("LUMENAL_BENCH_PG_ADMIN_URL",
                                                            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
                   help="PostgreSQL to create a scratch database on for the annotators section ('' = SQLite only)")
    p.add_argument("--labels", type=int, default=1000, help="labels before the first retrain (loop section)")
    # 7,400 frames leave ~6,400 unlabeled after the 1,000 labels: the timed re-score then lasts
    # ~7 s, so the first batch's trip through the pipeline (~0.3 s) and the 0.1 s progress polls
    # are a few percent of it (3,400 frames re-scored in ~3 s, where they were ~15%).
    p.add_argument("--video-frames", type=int, default=7400, help="SYNTHETIC demo video length (loop section)")
    p.add_argument("--video-size", type=int, default=128)
    p.add_argument("--frame-cache-mb", type=int, help="loop section: the inference service's decoded-frame "
                                                      "cache (default: the service's 256; 0 = every re-score "
                                                      "fetches and decodes every frame)")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for each loop step")
    p.add_argument("--json", type=Path, help="write every number here")
    return p


def run_sections(args: argparse.Namespace, work: Path) -> dict[str, object]:
    wanted = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    runners: dict[str, Callable[[], dict[str, object]]] = {
        "ingest": lambda: section_ingest(work, args.video),
        "mc": section_mc,
        "topk": lambda: section_topk(args.topk_frames, args.topk_calls),
        "annotators": lambda: section_annotators(work / "labels", args.annotators, args.annotator_frames,
                                                 args.annotator_think_s, args.pg_admin_url),
        "training": lambda: section_training(work / "training", args.labels),
        "loop": lambda: section_loop(work, args.labels, args.video_frames, args.video_size, 3, args.timeout,
                                     args.frame_cache_mb),
    }
    doc: dict[str, object] = dict.fromkeys(KEYS)
    doc["sections"] = {}
    for name in wanted:
        print(f"[bench system] {name} ...", flush=True)
        start = time.perf_counter()
        try:
            result = runners[name]()
            status = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - report the failure, keep measuring the rest
            result, status = {}, {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                                  "trace": traceback.format_exc(limit=5)}
            print(f"[bench system] {name} FAILED: {status['error']}", file=sys.stderr, flush=True)
        status["seconds"] = time.perf_counter() - start
        doc["sections"][name] = status
        doc.update(result)
    doc["swap_failed_requests"] = swap_failures(doc)
    return doc


TARGETS = {"ingest_ratio": (">=", 0.5), "scoring_ratio": (">=", 0.7), "mc_dropout_ratio": (">=", 0.3),
           "topk_p95_ms": ("<", 20.0), "nexttask_p95_ms": ("<", 50.0),
           "label_to_serving_s": ("<", 60.0), "swap_failed_requests": ("==", 0)}


def table(doc: dict[str, object]) -> str:
    lines = [f"{'metric':<24}{'value':>12}  target", "-" * 48]
    for key in KEYS:
        value = doc.get(key)
        op, target = TARGETS[key]
        shown = "not measured" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        goal = op if target is None else f"{op} {target}"
        lines.append(f"{key:<24}{shown:>12}  {goal}")
    for name, status in doc["sections"].items():  # type: ignore[union-attr]
        if not status["ok"]:
            lines.append(f"section {name} failed: {status['error']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lumenal.bench.cli import machine

    with tempfile.TemporaryDirectory(prefix="lumenal-bench-system-") as tmp:
        started = time.time()
        try:
            doc = run_sections(args, Path(tmp))
        except ValueError as exc:
            print(f"lumenal bench system: {exc}", file=sys.stderr)
            return 2
    doc.update({"benchmark": "system", "argv": ["lumenal", "bench", "system", *argv], "machine": machine(),
                "started": started, "elapsed_s": time.time() - started,
                "targets": {k: f"{op} {t}" if t is not None else op for k, (op, t) in TARGETS.items()}})
    print(table(doc))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1, default=_jsonable))
        print(f"wrote {args.json}")
    return 0 if all(s["ok"] for s in doc["sections"].values()) else 1


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)

