"""``lumenal demo --simulate-oracle``: run the active-learning loop against a running stack.

Simulated annotators answer from the demo's ground truth (the SYNTHETIC
video's per-frame labels), so the whole loop runs without people:

    ingest the demo video -> frames are scored -> annotators label the top-k
    (labels NextTask/SubmitLabel over gRPC) -> a retrain runs -> the new
    version is validated, published and hot-swapped -> the pool is re-scored

and the learning curve (labels vs validation macro-F1 per model version)
comes from the training service's registry (ListRuns/ListModels), where the
UI reads it too. A concurrent Predict probe counts failed requests during
the swaps. Addresses and the auth secret come from the environment or from
the local stack's state file (``lumenal up``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np
from tqdm import tqdm

from lumenal.core import auth
from lumenal.core.config import CommonSettings, from_env
from lumenal.core.grpc_server import channel
from lumenal.v1 import (
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    labels_pb2,
    labels_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

TERMINAL = {training_pb2.RUN_STATE_PROMOTED, training_pb2.RUN_STATE_REJECTED, training_pb2.RUN_STATE_FAILED}
CHUNK = 1 << 20


@dataclass
class Clients:
    """Stubs of every service, authenticated as a service (admin rights for the demo)."""

    settings: CommonSettings
    md: tuple = ()
    channels: list = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        self.md = auth.metadata(auth.service_token(s.auth_secret, "demo"))
        chans = {name: channel(addr) for name, addr in (("labels", s.labels_addr), ("storage", s.storage_addr),
                                                        ("inference", s.inference_addr),
                                                        ("training", s.training_addr))}
        self.channels = list(chans.values())
        self.labels = labels_pb2_grpc.LabelsServiceStub(chans["labels"])
        self.storage = storage_pb2_grpc.StorageServiceStub(chans["storage"])
        self.inference = inference_pb2_grpc.InferenceServiceStub(chans["inference"])
        self.training = training_pb2_grpc.TrainingServiceStub(chans["training"])

    def close(self) -> None:
        for ch in self.channels:
            ch.close()


# -- the demo video ---------------------------------------------------------------

def _upload(path: Path, options: storage_pb2.IngestOptions) -> Iterator[storage_pb2.IngestVideoRequest]:
    yield storage_pb2.IngestVideoRequest(options=options)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield storage_pb2.IngestVideoRequest(chunk=chunk)


def ingest_demo_video(clients: Clients, frames: int, size: int, workdir: Path, progress: bool = True) -> str:
    """Write the SYNTHETIC demo video and ingest it with its ground truth; returns the video id."""
    from lumenal.demo.synthetic import generate

    demo = generate(workdir, frames=frames, size=size, progress=progress)
    options = storage_pb2.IngestOptions(filename=demo.video.name, video_id=f"demo-{size}-{frames}",
                                        ground_truth_csv_data=demo.ground_truth.read_bytes())
    last = storage_pb2.IngestProgress()
    with tqdm(total=frames, unit="frame", desc="ingest (SYNTHETIC demo video)", disable=not progress) as bar:
        for last in clients.storage.IngestVideo(_upload(demo.video, options), metadata=clients.md):
            bar.n = last.frames_decoded
            bar.refresh()
    return last.video_id


def pool_size(clients: Clients) -> int:
    resp = clients.storage.ListFrames(storage_pb2.ListFramesRequest(page=common_pb2.Page(page_size=1)),
                                      metadata=clients.md, timeout=30)
    return int(resp.total)


# -- the simulated oracle -------------------------------------------------------------

class Oracle:
    """Simulated annotators: real accounts that log in and answer from ground truth."""

    def __init__(self, clients: Clients, annotators: int = 3) -> None:
        self.c = clients
        self.names = [f"oracle{i + 1}" for i in range(annotators)]
        self.tokens: dict[str, tuple] = {}
        self.class_names: tuple[str, ...] = ()
        self._gt: dict[str, str] = {}

    def setup(self) -> Oracle:
        """Create (or reset) the simulated annotators and log them in."""
        self.class_names = tuple(self.c.labels.GetProject(labels_pb2.GetProjectRequest(), metadata=self.c.md,
                                                          timeout=30).class_names)
        for name in self.names:
            password = secrets.token_urlsafe(16)
            try:
                self.c.labels.CreateAnnotator(labels_pb2.CreateAnnotatorRequest(
                    username=name, password=password, display_name=f"simulated {name}",
                    role=labels_pb2.ROLE_ANNOTATOR), metadata=self.c.md, timeout=30)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                self.c.labels.UpdateAnnotator(labels_pb2.UpdateAnnotatorRequest(
                    username=name, password=password, role=labels_pb2.ROLE_ANNOTATOR, active=True),
                    metadata=self.c.md, timeout=30)
            login = self.c.labels.Login(labels_pb2.LoginRequest(username=name, password=password), timeout=30)
            self.tokens[name] = auth.metadata(login.token)
        return self

    def answer(self, task: labels_pb2.Task) -> str:
        """The ground-truth class of the task's frame, mapped onto the project's class set ('' = none)."""
        from lumenal.demo.synthetic import BINARY

        gt = task.frame.ground_truth if task.HasField("frame") else ""
        if not gt:
            gt = self._gt.get(task.frame_id) or self.c.storage.GetFrame(
                storage_pb2.GetFrameRequest(frame_id=task.frame_id), metadata=self.c.md, timeout=30).meta.ground_truth
        if gt in self.class_names:
            return gt
        mapped = BINARY.get(gt, "")
        return mapped if mapped in self.class_names else ""

    def label(self, k: int, progress: bool = True, desc: str = "labelling") -> int:
        """Answer tasks round-robin until ``k`` frames resolved (or nothing is left); returns resolved."""
        resolved, idle = 0, set()
        with tqdm(total=k, unit="label", desc=desc, disable=not progress) as bar:
            turn = 0
            while resolved < k and len(idle) < len(self.names):
                name = self.names[turn % len(self.names)]
                turn += 1
                if name in idle:
                    continue
                try:
                    task = self.c.labels.NextTask(labels_pb2.NextTaskRequest(), metadata=self.tokens[name], timeout=30)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    idle.add(name)
                    continue
                idle.clear()
                label = self.answer(task)
                kind = common_pb2.LABEL_KIND_CLASS if label else common_pb2.LABEL_KIND_SKIP
                resp = self.c.labels.SubmitLabel(labels_pb2.SubmitLabelRequest(
                    request_id=uuid.uuid4().hex, lease_id=task.lease_id, frame_id=task.frame_id, kind=kind,
                    label=label, seconds_spent=0.1), metadata=self.tokens[name], timeout=30)
                if resp.resolved:
                    resolved += 1
                    bar.update(1)
        return resolved


# -- zero-downtime probe ---------------------------------------------------------------

class PredictProbe:
    """Predict in a loop against the newest version (no client retries) and count failures."""

    def __init__(self, target: str, model_name: str) -> None:
        from lumenal.ml.serving import ServingClient

        self.client = ServingClient(target, timeout_s=10, retries=0)
        self.model = model_name
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self.versions: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PredictProbe:
        meta = self.client.metadata(self.model)
        shape = meta["signatures"]["serving_default"]["inputs"]["images"][1]
        self._images = np.zeros((2, *shape[1:]), dtype=np.float32)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="predict-probe")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                version, _ = self.client.predict_versioned(self.model, self._images)
                self.ok += 1
                self.versions.add(version)
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failed += 1
                self.errors.append(str(exc))
            self._stop.wait(0.01)

    def stop(self) -> PredictProbe:
        self._stop.set()
        if self._thread:
            self._thread.join(15)
        self.client.close()
        return self


# -- one round ----------------------------------------------------------------------

@dataclass
class Point:
    round: int
    labels: int
    run_id: str
    state: str
    version: int
    macro_f1: float
    accuracy: float
    serving_macro_f1: float
    duration_s: float
    label_to_serving_s: float
    error: str = ""


def wait_idle_after(clients: Clients, since: float, timeout_s: float) -> training_pb2.TrainingRun:
    """The newest run that started after ``since``, once training is idle (nothing running or queued)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = clients.training.GetStatus(training_pb2.GetStatusRequest(), metadata=clients.md, timeout=30)
        if not st.HasField("current") and not st.pending and st.HasField("last") \
                and st.last.started_at.ToMicroseconds() / 1e6 >= since and st.last.state in TERMINAL:
            return st.last
        time.sleep(0.5)
    raise TimeoutError(f"no finished training run within {timeout_s:.0f}s")


def wait_rescored(clients: Clients, version: int, timeout_s: float) -> None:
    """Until inference scored the whole pool with ``version``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ps = clients.inference.GetPoolStats(inference_pb2.GetPoolStatsRequest(), metadata=clients.md, timeout=30)
        if ps.model_version >= version and not ps.rescore.running:
            return
        time.sleep(0.5)
    raise TimeoutError(f"pool not re-scored with version {version} within {timeout_s:.0f}s")


def run_round(clients: Clients, oracle: Oracle, r: int, k: int, trigger: str, timeout_s: float,
              progress: bool = True) -> Point:
    since = time.time()
    oracle.label(k, progress, desc=f"round {r}: labelling")
    if trigger == "manual":
        clients.training.TriggerRetrain(training_pb2.TriggerRetrainRequest(reason=f"demo round {r}"),
                                        metadata=clients.md, timeout=30)
    run = wait_idle_after(clients, since, timeout_s)
    if run.state == training_pb2.RUN_STATE_PROMOTED:
        wait_rescored(clients, run.version, timeout_s)
    m = run.metrics
    return Point(r, run.train_labels + run.val_labels, run.run_id,
                 training_pb2.RunState.Name(run.state).removeprefix("RUN_STATE_"), run.version,
                 m.get("macro_f1", float("nan")), m.get("accuracy", float("nan")),
                 m.get("serving_macro_f1", float("nan")), run.duration_s,
                 m.get("label_to_serving_s", float("nan")), run.error)


def learning_curve(clients: Clients) -> list[dict]:
    """Every run in start order with its labels and validation metrics (what the UI plots)."""
    runs = clients.training.ListRuns(training_pb2.ListRunsRequest(), metadata=clients.md, timeout=30).runs
    rows = [{"run_id": r.run_id, "state": training_pb2.RunState.Name(r.state).removeprefix("RUN_STATE_"),
             "labels": r.train_labels + r.val_labels, "version": r.version,
             "macro_f1": r.metrics.get("macro_f1", float("nan")), "accuracy": r.metrics.get("accuracy", float("nan")),
             "started": r.started_at.ToSeconds()} for r in runs if r.state in TERMINAL]
    return sorted(rows, key=lambda row: row["started"])


def format_curve(rows: list[dict]) -> str:
    lines = [f"{'labels':>7} {'state':<9} {'version':>7} {'macro-F1':>9} {'accuracy':>9}"]
    lines += [f"{r['labels']:>7} {r['state']:<9} {r['version'] if r['state'] == 'PROMOTED' else '-':>7} "
              f"{r['macro_f1']:>9.3f} {r['accuracy']:>9.3f}" for r in rows]
    return "\n".join(lines)


def settings_from_env() -> CommonSettings:
    """Environment first, then the running local stack's state file."""
    from lumenal.stack.state import client_env

    return from_env(CommonSettings, environ={**client_env(), **os.environ})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lumenal demo", description="Run the active-learning loop against a running stack.")
    p.add_argument("--simulate-oracle", action="store_true",
                   help="simulated annotators answer from the SYNTHETIC demo ground truth")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--labels-per-round", type=int, default=50)
    p.add_argument("--annotators", type=int, default=3)
    p.add_argument("--trigger", choices=("manual", "auto"), default="manual",
                   help="manual: TriggerRetrain after each round; auto: wait for the every-N-labels policy")
    p.add_argument("--video-frames", type=int, default=1500, help="demo video length when the pool is empty")
    p.add_argument("--video-size", type=int, default=128)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each round's run")
    p.add_argument("--json", type=Path, help="write the rounds and the learning curve here")
    args = p.parse_args(argv)
    if not args.simulate_oracle:
        print("lumenal demo: only --simulate-oracle is available here; people label in the UI", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.labels_per_round < 1 or args.annotators < 1:
        print("lumenal demo: --rounds, --labels-per-round and --annotators must be >= 1", file=sys.stderr)
        return 2
    clients = Clients(settings_from_env())
    try:
        return _demo(clients, args)
    except grpc.RpcError as exc:
        print(f"lumenal demo: {exc.code().name}: {exc.details()} (is the stack running? `lumenal up`)",
              file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"lumenal demo: {exc}", file=sys.stderr)
        return 1
    finally:
        clients.close()


def _demo(clients: Clients, args: argparse.Namespace) -> int:
    progress = sys.stderr.isatty()
    if pool_size(clients) == 0:
        with tempfile.TemporaryDirectory(prefix="lumenal-demo-") as tmp:
            vid = ingest_demo_video(clients, args.video_frames, args.video_size, Path(tmp), progress)
        print(f"ingested SYNTHETIC demo video {vid} (not real endoscopy)")
    oracle = Oracle(clients, args.annotators).setup()
    probe: PredictProbe | None = None
    points = []
    for r in range(1, args.rounds + 1):
        point = run_round(clients, oracle, r, args.labels_per_round, args.trigger, args.timeout, progress)
        points.append(point)
        print(f"round {r}: {point.labels} labels -> {point.state} v{point.version} "
              f"macro-F1 {point.macro_f1:.3f} (serving {point.serving_macro_f1:.3f}) "
              f"in {point.duration_s:.1f}s{' - ' + point.error if point.error else ''}", flush=True)
        if probe is None and point.state == "PROMOTED":
            probe = PredictProbe(clients.settings.modelserver_addr, clients.settings.model_name).start()
    if probe is not None:
        probe.stop()
        print(f"Predict during hot swaps: {probe.ok} ok, {probe.failed} failed, versions seen {sorted(probe.versions)}")
    curve = learning_curve(clients)
    print("\nlearning curve (validation set grows with the labels):\n" + format_curve(curve))
    if args.json:
        args.json.write_text(json.dumps({"rounds": [asdict(pt) for pt in points], "curve": curve,
                                         "predict_failed": probe.failed if probe else 0}, indent=2))
    return 0
