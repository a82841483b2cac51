"""The training engine: retrain policy, one run at a time, validation gate, publish, rollback.

State that must survive a crash lives in the registry (``state.json``): the
pending (coalesced) request, the run in progress, the label cursor and the
CEAL round. Labels themselves are never kept here: every run re-reads them
from the labels service, so killing the service loses nothing. On restart a
run that was in progress is marked FAILED ("interrupted") and run again.
"""

from __future__ import annotations

import logging
import math
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from lumenal.core import topics
from lumenal.core.errors import FailedPrecondition, InvalidArgument, ServiceError, Unavailable
from lumenal.core.events import Publisher, Record
from lumenal.training import evaluation, split, sync, trainer
from lumenal.training.clients import Upstream
from lumenal.training.policy import Request, RetrainPolicy
from lumenal.training.registry import Registry
from lumenal.training.settings import TrainingSettings
from lumenal.v1 import events_pb2

log = logging.getLogger(__name__)

QUEUED, RUNNING, PROMOTED, REJECTED, FAILED = "QUEUED", "RUNNING", "PROMOTED", "REJECTED", "FAILED"
TERMINAL = (PROMOTED, REJECTED, FAILED)

RUNS = Counter("lumenal_training_runs_total", "finished training runs", ["outcome"])
RUN_SECONDS = Histogram("lumenal_training_run_seconds", "wall time of a training run",
                        buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))
EPOCH_SECONDS = Gauge("lumenal_training_epoch_seconds", "mean seconds per epoch of the last run")
LABEL_TO_SERVING = Gauge("lumenal_training_label_to_serving_seconds",
                         "trigger label resolved -> new version AVAILABLE, last promotion")
LABELS_SEEN = Gauge("lumenal_training_labels_seen", "distinct resolved labels seen")
PENDING = Gauge("lumenal_training_pending", "1 when a (coalesced) run request waits")
SERVING_VERSION = Gauge("lumenal_training_serving_version", "newest published model version")
VAL_MACRO_F1 = Gauge("lumenal_training_val_macro_f1", "validation macro-F1 of the last candidate")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


class Engine:
    """Owns the policy, the worker thread and every registry write."""

    def __init__(self, settings: TrainingSettings, registry: Registry, upstream: Upstream,
                 serving: Any, publisher: Publisher | None) -> None:
        self.s = settings
        self.registry = registry
        self.upstream = upstream
        self.serving = serving
        self.publisher = publisher
        self.policy = RetrainPolicy(settings.retrain_every, settings.min_interval_s)
        self._cond = threading.Condition()
        self._publish_lock = threading.Lock()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.current: dict | None = None
        self.trained_sequence = 0
        self.ceal_round = 0
        self.serving_version = 0
        self._seen_frames: set[str] = set()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.recounted = False

    # -- persistence -------------------------------------------------------
    def _persist(self) -> None:
        """Write state.json (caller holds the lock, so writes are ordered)."""
        p = self.policy
        self.registry.save_state({
            "pending": asdict(p.pending) if p.pending else None,
            "current_run_id": self.current["run_id"] if self.current else None,
            "trained_sequence": self.trained_sequence,
            "ceal_round": self.ceal_round,
            "last_finished_at": p.last_finished_at,
        })
        PENDING.set(1 if p.pending else 0)

    def recover(self) -> None:
        """Load state; fail the run a crash interrupted and queue it again."""
        state = self.registry.load_state()
        with self._cond:
            self.trained_sequence = int(state.get("trained_sequence") or 0)
            self.ceal_round = int(state.get("ceal_round") or 0)
            self.policy.last_finished_at = state.get("last_finished_at")
            if state.get("pending"):
                self.policy.pending = Request(**state["pending"])
            interrupted = state.get("current_run_id")
            if interrupted:
                self._fail_interrupted(interrupted)
            self.serving_version = self.registry.latest_version()
            SERVING_VERSION.set(self.serving_version)
            self._persist()
            self._cond.notify_all()

    def _fail_interrupted(self, run_id: str) -> None:
        try:
            run = self.registry.get_run(run_id)
        except ServiceError:
            run = {"run_id": run_id, "reason": "unknown", "started_at": time.time()}
        if run.get("state") in TERMINAL:  # it finished; only the state write was lost
            return
        now = time.time()
        run.update(state=FAILED, finished_at=now,
                   error="interrupted: the training service stopped mid-run; the request was re-queued",
                   duration_s=now - float(run.get("started_at") or now))
        self.registry.save_run(run)
        RUNS.labels(FAILED).inc()
        log.warning("run interrupted by a restart; re-queued", extra={"run_id": run_id})
        if self.policy.pending is None:
            self.policy.pending = Request(f"resume: {run.get('reason', '')}", True, run.get("trigger_label_frame_id", ""),
                                          float(run.get("trigger_label_at") or 0.0))
        if not self.policy.pending.run_id:
            self._queue_record(self.policy.pending)

    # -- triggers ------------------------------------------------------------
    def _queue_record(self, req: Request) -> None:
        """Give a new pending request its run id and a QUEUED run record."""
        req.run_id = new_run_id()
        self.registry.save_run({"run_id": req.run_id, "state": QUEUED, "reason": req.reason,
                                "queued_at": time.time(), "trigger_label_frame_id": req.trigger_frame_id,
                                "trigger_label_at": req.trigger_at})

    def recount(self) -> None:
        """Count resolved labels from the labels service (events consumed before a crash included)."""
        labels = self.upstream.resolved_after(0)
        with self._cond:
            for lab in labels:
                self._count(lab.frame_id, lab.sequence, 0.0)
            self.recounted = True
            self._persist()
            self._cond.notify_all()

    def _count(self, frame_id: str, sequence: int, resolved_at: float) -> None:
        self._seen_frames.add(frame_id)
        LABELS_SEEN.set(len(self._seen_frames))
        if sequence and sequence <= self.trained_sequence:
            return
        had_pending = self.policy.pending is not None
        if self.policy.on_label(str(sequence or frame_id), frame_id, resolved_at) and not had_pending:
            self._queue_record(self.policy.pending)

    def on_label_event(self, msg: events_pb2.LabelResolved, record: Record | None = None) -> None:
        """``labels.resolved`` handler: idempotent (redeliveries dedupe on the sequence)."""
        at = msg.resolved_at.ToSeconds() + msg.resolved_at.nanos / 1e9 if msg.HasField("resolved_at") else time.time()
        with self._cond:
            before = self.policy.pending
            self._count(msg.frame_id, msg.sequence, at)
            if self.policy.pending is not before:
                self._cond.notify_all()
                try:
                    self._persist()
                except Exception as exc:  # noqa: BLE001 - labels are re-counted from ListResolved on restart
                    log.warning("could not persist the pending request", extra={"error": str(exc)})

    def trigger(self, reason: str) -> tuple[bool, str, str]:
        """Manual trigger: ``(coalesced, run_id, message)``."""
        with self._cond:
            coalesced = self.policy.request(reason or "manual", manual=True)
            req = self.policy.pending
            if not req.run_id:
                self._queue_record(req)
            self._persist()
            self._cond.notify_all()
        if coalesced:
            msg = ("a run is in progress; this request was coalesced into one follow-up run"
                   if self.current else "coalesced into the run already queued")
        else:
            msg = "queued; starts now"
        return coalesced, req.run_id, msg

    # -- worker ------------------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._loop, daemon=True, name="training-worker")
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _loop(self) -> None:
        backoff = 1.0
        while not self._stop.is_set() and not self.recounted:
            try:
                self.recount()
            except Exception as exc:  # noqa: BLE001 - labels may start later; keep trying
                log.warning("cannot count resolved labels yet", extra={"error": str(exc)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 15)
        while not self._stop.is_set():
            with self._cond:
                req = self.policy.next_run(time.time())
                if req is None:
                    wait = self.policy.wait_s(time.time())
                    self._cond.wait(timeout=1.0 if wait is None else max(0.05, min(wait, 1.0)))
                    continue
                run = self._start_run(req)
            self._run(run, req)

    def _start_run(self, req: Request) -> dict:
        run_id = req.run_id or new_run_id()
        now = time.time()
        run = {"run_id": run_id, "state": RUNNING, "reason": req.reason, "started_at": now,
               "trigger_label_frame_id": req.trigger_frame_id, "trigger_label_at": req.trigger_at,
               "requests": req.count, "base_version": self.serving_version, "metrics": {},
               "params": self.params()}
        self.current = run
        try:
            self.registry.save_run(run)
            self._persist()
        except Exception as exc:  # noqa: BLE001 - S3 blip: the run goes on; it is saved again at the end
            log.warning("could not record the run start", extra={"run_id": run_id, "error": str(exc)})
        log.info("run started", extra={"run_id": run_id, "reason": req.reason})
        return run

    def _durably(self, what: str, fn: Callable[[], None]) -> None:
        """Retry a registry write until it succeeds (S3 may be away for a while) or we stop."""
        delay = 0.5
        while True:
            try:
                fn()
                return
            except Exception as exc:  # noqa: BLE001 - keep the worker alive
                log.warning("registry write failed; retrying", extra={"what": what, "error": str(exc)})
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 10)

    def params(self) -> dict:
        s = self.s
        return {"warm_start": s.warm_start, "epochs": s.epochs, "patience": s.patience,
                "batch_size": s.batch_size, "max_train_s": s.max_train_s, "learning_rate": s.learning_rate,
                "input_size": s.input_size,
                "class_weights": s.class_weights, "val_fraction": s.val_fraction, "ceal": s.ceal,
                "ceal_delta": s.ceal_delta, "ceal_decay": s.ceal_decay, "ceal_round": self.ceal_round,
                "promotion_tolerance": s.promotion_tolerance, "seed": s.seed}

    def _run(self, run: dict, req: Request) -> None:
        try:
            self._execute(run)
        except Exception as exc:  # noqa: BLE001 - any failure fails the run, never the service
            run["state"] = FAILED
            run["error"] = str(exc) if isinstance(exc, trainer.TrainingFailed | ServiceError) \
                else f"{type(exc).__name__}: {exc}"
            log.exception("run failed", extra={"run_id": run["run_id"]})
        now = time.time()
        run["finished_at"] = now
        run["duration_s"] = now - run["started_at"]
        RUNS.labels(run["state"]).inc()
        RUN_SECONDS.observe(run["duration_s"])
        self._durably("run record", lambda: self.registry.save_run(run))
        with self._cond:
            self.current = None
            self.policy.finish(now)
            self._cond.notify_all()

        def persist() -> None:
            with self._cond:
                self._persist()
        self._durably("state", persist)
        log.info("run finished", extra={"run_id": run["run_id"], "state": run["state"],
                                        "error": run.get("error", ""), "duration_s": round(run["duration_s"], 2)})

    # -- one run -------------------------------------------------------------
    def _execute(self, run: dict) -> None:
        from lumenal.ml.model import ModelSpec

        s = self.s
        t0 = time.perf_counter()
        class_names = self.upstream.class_names() or s.class_list()
        if len(class_names) < 2:
            raise trainer.TrainingFailed("the project has fewer than two classes")
        labels = self.upstream.resolved_after(0)
        with self._cond:
            self.trained_sequence = max([self.trained_sequence, *(lab.sequence for lab in labels)])
        usable = [lab for lab in labels if lab.label in class_names]
        run["metrics"]["labels_ignored"] = float(len(labels) - len(usable))
        if len(usable) < s.min_labels:
            raise trainer.TrainingFailed(f"{len(usable)} labelled frames; need at least {s.min_labels} "
                                         "(LUMENAL_TRAINING_MIN_LABELS)")
        spec = ModelSpec(class_names=tuple(class_names), input_size=s.input_size, name=s.model_name)
        images = self._images([lab.frame_id for lab in usable], spec.input_size, spec.channels)
        usable = [lab for lab in usable if lab.frame_id in images]
        train_ids, val_ids = split.split([lab.frame_id for lab in usable], s.val_fraction)
        if not val_ids or not train_ids:
            raise trainer.TrainingFailed(f"split of {len(usable)} labels left {len(train_ids)} for training and "
                                         f"{len(val_ids)} for validation; label more frames")
        y_of = {lab.frame_id: class_names.index(lab.label) for lab in usable}
        x_train, y_train = self._arrays(train_ids, images, y_of)
        x_val, y_val = self._arrays(val_ids, images, y_of)
        run.update(train_labels=len(train_ids), val_labels=len(val_ids))
        val_set = set(val_ids)
        self.registry.save_labels(run["run_id"], [
            {"frame_id": lab.frame_id, "label": lab.label, "sequence": lab.sequence,
             "split": "val" if lab.frame_id in val_set else "train"} for lab in usable])

        t_data = time.perf_counter()
        model, warm_from = self._initial_model(spec, run["base_version"])
        run["warm_start_from"] = warm_from
        x_unl, delta = self._ceal_pool(set(y_of), spec)
        cfg = trainer.TrainConfig(epochs=s.epochs, patience=s.patience, batch_size=s.batch_size,
                                  learning_rate=s.learning_rate, class_weights=s.class_weights, seed=s.seed,
                                  ceal_epochs=s.ceal_epochs, ceal_max_ratio=s.ceal_max_ratio,
                                  max_train_s=s.max_train_s)
        result = trainer.train(model, train_ids, x_train, y_train, len(class_names), cfg, x_unl, delta)
        run.update(epochs=result.epochs, pseudo_labels=result.pseudo_labels)
        EPOCH_SECONDS.set(result.seconds_per_epoch)
        metrics = evaluation.classification_metrics(y_val, trainer.predict_classes(model, x_val), class_names)
        t_train = time.perf_counter()
        metrics.update(data_s=t_data - t0, train_s=t_train - t_data,
                       seconds_per_epoch=result.seconds_per_epoch, train_loss=result.history["loss"][-1],
                       train_labels=float(len(train_ids)), pseudo_labels=float(result.pseudo_labels),
                       time_budget_hit=float(result.budget_hit),
                       ceal_delta=float(delta) if delta is not None else 0.0)
        run["metrics"].update(metrics)
        VAL_MACRO_F1.set(metrics["macro_f1"])
        with self._publish_lock:
            self._gate_and_publish(run, model, spec, x_val, y_val)
        run["metrics"]["gate_publish_s"] = time.perf_counter() - t_train
        if x_unl is not None:
            with self._cond:
                self.ceal_round += 1

    def _gate_and_publish(self, run: dict, model: Any, spec: Any, x_val: np.ndarray, y_val: np.ndarray) -> None:
        """Compare with the model serving NOW (a rollback may have happened mid-run), then publish."""
        serving_version = self.current_serving_version()
        serving = self._evaluate_serving(serving_version, x_val, y_val, spec.class_names)
        if serving is not None:
            run["metrics"].update({f"serving_{k}": v for k, v in serving.items()
                                   if k in ("macro_f1", "accuracy")})
        decision = evaluation.gate(run["metrics"], serving, self.s.promotion_tolerance)
        run["gate"] = decision.reason
        run["compared_with_version"] = serving_version
        version = max(self.registry.latest_version(), serving_version) + 1
        run["version"] = version
        if not decision.promote:
            run["state"] = REJECTED
            run["error"] = f"not promoted: {decision.reason}"
            return
        from lumenal.ml.model import export_version

        with tempfile.TemporaryDirectory(prefix="lumenal-train-") as tmp:
            vdir = export_version(model, spec, Path(tmp) / "export", version)
            keras_path = Path(tmp) / "model.keras"
            model.save(keras_path)
            meta = self.registry.put_version(version, vdir, keras_path, {
                "run_id": run["run_id"], "created_at": time.time(), "metrics": run["metrics"],
                "class_names": list(spec.class_names), "input_size": spec.input_size,
                "train_labels": run["train_labels"], "reason": "promoted", "rollback_of": 0})
        confirmed_at = self._sync_and_publish(version, meta, "promoted")
        if confirmed_at and run.get("trigger_label_at"):
            run["metrics"]["label_to_serving_s"] = confirmed_at - run["trigger_label_at"]
            LABEL_TO_SERVING.set(run["metrics"]["label_to_serving_s"])
        run["state"] = PROMOTED

    # -- data ----------------------------------------------------------------
    def _images(self, frame_ids: list[str], size: int, channels: int) -> dict[str, np.ndarray]:
        """Decoded uint8 frames by id (cached: frames never change); corrupt ones fail the run."""
        from lumenal.ml.images import decode_uint8

        wanted = [f for f in frame_ids if f not in self._cache]
        bad: list[str] = []
        got: set[str] = set()
        for fid, data in self.upstream.frames(wanted):
            got.add(fid)
            try:
                self._cache[fid] = decode_uint8(data, size, channels)
            except ValueError as exc:
                bad.append(f"{fid}: {exc}")
        bad += [f"{fid}: not found in storage" for fid in wanted if fid not in got]
        while len(self._cache) > self.s.frame_cache_frames:
            self._cache.popitem(last=False)
        if bad and not self.s.skip_corrupt_frames:
            raise trainer.TrainingFailed(f"{len(bad)} frame(s) unusable (set LUMENAL_TRAINING_SKIP_CORRUPT_FRAMES "
                                         f"to train without them): {'; '.join(bad[:3])}")
        if bad:
            log.warning("skipping unusable frames", extra={"count": len(bad), "first": bad[0]})
        bad_ids = {b.split(": ", 1)[0] for b in bad}
        return {f: self._cache[f] for f in frame_ids if f not in bad_ids and f in self._cache}

    @staticmethod
    def _arrays(ids: list[str], images: dict[str, np.ndarray], y_of: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([images[i] for i in ids]).astype(np.float32) / 255.0
        return x, np.asarray([y_of[i] for i in ids], dtype=np.int64)

    def _ceal_pool(self, labelled: set[str], spec: Any) -> tuple[np.ndarray | None, float | None]:
        if not self.s.ceal:
            return None, None
        ids = self.upstream.sample_frame_ids(labelled, self.s.ceal_max_unlabeled, self.s.seed + self.ceal_round)
        if not ids:
            return None, None
        images = self._candidates(ids, spec.input_size, spec.channels)
        if not images:
            return None, None
        x = np.stack(list(images.values())).astype(np.float32) / 255.0
        return x, trainer.ceal_delta(self.s.ceal_delta, self.s.ceal_decay, self.ceal_round)

    def _candidates(self, ids: list[str], size: int, channels: int) -> dict[str, np.ndarray]:
        """Unlabelled candidates: a corrupt one is just not a candidate (it is no training label)."""
        from lumenal.ml.images import decode_uint8

        out = {}
        for fid, data in self.upstream.frames([f for f in ids if f not in self._cache]):
            try:
                self._cache[fid] = decode_uint8(data, size, channels)
            except ValueError:
                continue
        for fid in ids:
            if fid in self._cache:
                out[fid] = self._cache[fid]
        return out

    # -- models ----------------------------------------------------------------
    def _initial_model(self, spec: Any, base_version: int) -> tuple[Any, int]:
        """Warm start from the serving version's Keras copy when possible, else from scratch."""
        from lumenal.ml.model import build_classifier

        model = build_classifier(spec, seed=self.s.seed)
        if not (self.s.warm_start and base_version):
            return model, 0
        with tempfile.TemporaryDirectory(prefix="lumenal-warm-") as tmp:
            path = self.registry.download_keras(base_version, Path(tmp) / "model.keras")
            if path is None:
                log.info("serving version has no Keras copy; training from scratch", extra={"version": base_version})
                return model, 0
            try:
                model.load_weights(path)
            except (ValueError, KeyError) as exc:  # class set or architecture changed
                log.warning("warm start impossible; training from scratch", extra={"error": str(exc)})
                return build_classifier(spec, seed=self.s.seed), 0
        return model, base_version

    def current_serving_version(self) -> int:
        """Newest version in the registry or on the model server (which may hold a seed model)."""
        version = self.registry.latest_version()
        try:
            version = max(version, int(self.serving.latest_version(self.s.model_name) or 0))
        except Unavailable as exc:
            log.warning("model server unreachable; using the registry's version", extra={"error": str(exc)})
        self.serving_version = version
        SERVING_VERSION.set(version)
        return version

    def _evaluate_serving(self, version: int, x_val: np.ndarray, y_val: np.ndarray,
                          class_names: tuple[str, ...]) -> dict[str, float] | None:
        """Metrics of the serving model on the current validation set (through the model server)."""
        if not version:
            return None
        parts = [self.serving.predict(self.s.model_name, x_val[i:i + 128], version=version)["probabilities"]
                 for i in range(0, len(x_val), 128)]
        probs = np.concatenate(parts)
        if probs.shape[1] != len(class_names):
            log.warning("serving model has another class set; not comparable", extra={"version": version})
            return None
        return evaluation.classification_metrics(y_val, np.argmax(probs, axis=1), class_names)

    def _sync_and_publish(self, version: int, meta: dict, reason: str) -> float | None:
        """Copy into the serving base path, wait until it answers, then announce it."""
        if self.s.model_base_path:
            base = Path(self.s.model_base_path)
            sync.sync_version(self.registry, version, base)
            sync.prune(base, self.registry.model, self.s.sync_keep_versions)
        confirmed_at = self._wait_available(version)
        event = events_pb2.ModelPublished(
            model_name=self.s.model_name, version=version, registry_key=meta["registry_key"],
            metrics={k: float(v) for k, v in meta.get("metrics", {}).items() if isinstance(v, int | float)},
            class_names=meta["class_names"], reason=reason, input_size=int(meta["input_size"]))
        event.published_at.GetCurrentTime()
        if self.publisher is not None:
            self.publisher.publish_sync(topics.MODELS_PUBLISHED, event, self.s.model_name)
        self.serving_version = version
        SERVING_VERSION.set(version)
        log.info("model published", extra={"version": version, "reason": reason})
        return confirmed_at

    def _wait_available(self, version: int) -> float | None:
        """Unix time the model server reported ``version`` AVAILABLE (None: not within the wait)."""
        deadline = time.monotonic() + self.s.serving_wait_s
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                if any(v == version and state == "AVAILABLE"
                       for v, state in self.serving.model_status(self.s.model_name)):
                    return time.time()
            except ServiceError:
                pass
            time.sleep(0.1)
        log.warning("model server did not report the version AVAILABLE in time; publishing anyway",
                    extra={"version": version, "wait_s": self.s.serving_wait_s})
        return None

    # -- rollback --------------------------------------------------------------
    def rollback(self, version: int) -> dict:
        """Re-publish an earlier version as the NEWEST version (see docs/training.md for why)."""
        if version < 1:
            raise InvalidArgument("version must be a positive integer")
        with self._publish_lock:
            self.registry.get_version(version)  # NotFound when unknown
            serving = self.current_serving_version()
            if version == serving:
                raise FailedPrecondition(f"version {version} is already the serving version")
            new = max(self.registry.latest_version(), serving) + 1
            meta = self.registry.copy_version(version, new, {"reason": "rollback", "rollback_of": version,
                                                             "created_at": time.time()})
            self._sync_and_publish(new, meta, "rollback")
        log.info("rolled back", extra={"to": version, "as_version": new})
        return meta

    # -- read side -------------------------------------------------------------
    def status(self) -> dict:
        with self._cond:
            return {"current": dict(self.current) if self.current else None,
                    "pending": self.policy.pending is not None,
                    "serving_version": self.serving_version,
                    "labels_seen": len(self._seen_frames),
                    "labels_since_last_run": self.policy.labels_since_last_run}

    def last_finished(self) -> dict | None:
        return next((r for r in self.registry.list_runs() if r.get("state") in TERMINAL), None)



def finite(metrics: dict) -> dict[str, float]:
    """Numeric, finite entries (what the protos' metric maps carry)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(float(v))}
