"""Frames -> scores: fetch from storage, decode, Predict with an explicit version, publish.

``ModelTracker`` decides which model version to score with (the one the last
``models.published`` named, once the model server has it AVAILABLE; before
any event, the server's newest AVAILABLE version; none = cold start).
``Scorer`` turns frame ids into a ``frames.scored`` event. ``CatchUp`` is the
background re-scorer: it scores every frame of this replica's partitions that
lacks a score under the tracked version (after ``models.published``, after a
restart, after a rebalance).
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from lumenal.core import auth, errors, topics
from lumenal.core.events import Publisher, now_ts
from lumenal.ml import images
from lumenal.ml.serving import ServingClient
from lumenal.v1 import common_pb2, events_pb2, storage_pb2, storage_pb2_grpc

from .framecache import FrameCache
from .pool import PoolIndex
from .settings import InferenceSettings

log = logging.getLogger(__name__)

SCORED = Counter("lumenal_inference_frames_scored_total", "frames scored", ["kind"])
SKIPPED = Counter("lumenal_inference_frames_skipped_total", "frames that could not be scored", ["reason"])
PREDICT_SECONDS = Histogram("lumenal_inference_predict_seconds", "Predict call latency",
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
MODEL_VERSION = Gauge("lumenal_inference_model_version", "model version frames are scored with")

FRAME_ID = re.compile(r"^.+:\d{6,}$")
RESCORE_BATCHES_PER_STEP = 16  # a step's pipeline fills and drains once: keep steps long
PREPARE_AHEAD = 2  # chunks fetched from storage and decoded ahead of the model, in parallel
PREDICTS_IN_FLIGHT = 3  # concurrent Predict calls of one score() (the model server runs them in parallel)
THUMB = 8  # cold-start descriptor: 8x8 area-averaged thumbnail per channel


def descriptor(batch: np.ndarray) -> np.ndarray:
    """``[N, S, S, C]`` -> ``[N, 8*8*C]`` area-averaged thumbnails: a cheap embedding for cold-start k-center."""
    n, s, _, c = batch.shape
    f = max(1, s // THUMB)
    crop = batch[:, : f * THUMB, : f * THUMB, :]
    if crop.shape[1] < THUMB:  # tiny inputs: nearest-pad up to 8x8
        idx = np.arange(THUMB) * crop.shape[1] // THUMB
        return crop[:, idx][:, :, idx].reshape(n, -1)
    return crop.reshape(n, THUMB, f, THUMB, f, c).mean(axis=(2, 4)).reshape(n, -1)


def check_image(img: np.ndarray, size: int, channels: int) -> str | None:
    """Why ``img`` cannot go to the model, or None when it can (uint8 frames, as decoded, are
    in range by construction; float32 ones must lie in [0, 1])."""
    if not isinstance(img, np.ndarray) or img.dtype not in (np.uint8, np.float32):
        return f"wrong dtype {getattr(img, 'dtype', type(img).__name__)} (want uint8 or float32)"
    if img.shape != (size, size, channels):
        return f"wrong shape {img.shape} (want {(size, size, channels)})"
    if img.dtype == np.float32 and (not np.isfinite(img).all() or img.min() < 0 or img.max() > 1):
        return "values outside [0, 1]"
    return None


@dataclass(frozen=True)
class ModelInfo:
    version: int
    input_size: int
    channels: int
    mc: bool              # mc_dropout signature used
    has_embedding: bool


class ModelTracker:
    """Which version to score with, with its input size and usable signatures."""

    def __init__(self, settings: InferenceSettings, client: ServingClient, pool: PoolIndex) -> None:
        self.s = settings
        self.client = client
        self.pool = pool
        self._info: ModelInfo | None = None
        self._checked = 0.0
        self._waiting: dict[int, float] = {}
        self._given_up: set[int] = set()
        self.error: str | None = None
        self.lock = threading.Lock()

    def invalidate(self) -> None:
        with self.lock:
            self._checked = 0.0

    def current(self) -> ModelInfo | None:
        """The version to score with now; raises ``Unavailable`` while a published one is loading."""
        with self.lock:
            target = self.pool.target_version
            fresh = time.monotonic() - self._checked < self.s.model_poll_s
            if fresh and (self._info is None or target in (0, self._info.version) or target in self._given_up):
                return self._info
            self._info = self._resolve(target)
            self._checked = time.monotonic()
            MODEL_VERSION.set(self._info.version if self._info else 0)
            return self._info

    def _resolve(self, target: int) -> ModelInfo | None:
        name = self.s.model_name
        if target and target not in self._given_up:
            try:
                states = dict(self.client.model_status(name))
            except errors.NotFound:
                states = {}
            if states.get(target) == "AVAILABLE":
                return self._adopt(target)
            first = self._waiting.setdefault(target, time.monotonic())
            if time.monotonic() - first < self.s.version_wait_s:
                self.error = None
                raise errors.Unavailable(f"model {name} version {target} is {states.get(target, 'not loaded')} "
                                         f"on the model server; waiting for it")
            self._given_up.add(target)
            self.pool.abandon_target(target)
            log.error("published model version never became available; keeping the newest available one",
                      extra={"model": name, "version": target, "waited_s": self.s.version_wait_s})
        latest = self.client.latest_version(name)
        return self._adopt(latest) if latest is not None else None

    def _adopt(self, version: int) -> ModelInfo:
        if self._info is not None and self._info.version == version:
            return self._info
        meta = self.client.metadata(self.s.model_name, version)
        sigs = meta["signatures"]
        mc = self.s.mc and "mc_dropout" in sigs
        if not mc and "serving_default" not in sigs:
            self.error = f"model version {version} has neither mc_dropout nor serving_default signature"
            raise errors.FailedPrecondition(self.error)
        if self.s.mc and not mc:
            log.warning("model has no mc_dropout signature; scoring without BALD", extra={"version": version})
        sig = sigs["mc_dropout" if mc else "serving_default"]
        dtype, shape = sig["inputs"].get("images", ("", ()))
        if dtype != "DT_FLOAT" or len(shape) != 4 or shape[1] <= 0 or shape[1] != shape[2]:
            self.error = f"model version {version} input 'images' is {dtype}{list(shape)}, want DT_FLOAT[N,S,S,C]"
            raise errors.FailedPrecondition(self.error)
        self.error = None
        info = ModelInfo(version, int(shape[1]), int(shape[3]), mc, "embedding" in sigs or mc)
        log.info("scoring with model version", extra={"version": version, "input_size": info.input_size,
                                                      "mc": mc})
        return info


@dataclass
class ScoreReport:
    version: int
    scored: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


class Scorer:
    """Frame ids -> one ``frames.scored`` event (published and acknowledged)."""

    def __init__(self, settings: InferenceSettings, storage: storage_pb2_grpc.StorageServiceStub,
                 serving: ServingClient, tracker: ModelTracker, publisher: Publisher) -> None:
        self.s = settings
        self.storage = storage
        self.serving = serving
        self.tracker = tracker
        self.publisher = publisher
        self.token = auth.service_token(settings.auth_secret, "inference")
        self._prefetch = ThreadPoolExecutor(PREPARE_AHEAD, thread_name_prefix="score-prefetch")
        self._predictors = ThreadPoolExecutor(PREDICTS_IN_FLIGHT, thread_name_prefix="score-predict")
        self.cache = FrameCache(settings.frame_cache_mb * 2**20)

    def fetch(self, frame_ids: list[str]) -> dict[str, bytes]:
        """Encoded frames by id; frames storage does not have are left out."""
        md = auth.metadata(self.token)
        try:
            return {f.meta.frame_id: f.image for f in
                    self.storage.GetFrames(storage_pb2.GetFramesRequest(frame_ids=frame_ids), metadata=md,
                                           timeout=60)}
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise errors.Unavailable(f"storage unavailable: {exc.details()}") from exc
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        out: dict[str, bytes] = {}  # one is missing: isolate it
        for fid in frame_ids:
            try:
                out[fid] = self.storage.GetFrame(storage_pb2.GetFrameRequest(frame_id=fid), metadata=md,
                                                 timeout=30).image
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        return out

    def score(self, frame_ids: list[str], rescore: bool = False) -> ScoreReport:
        """Score and publish, one event per ``batch_size`` chunk; corrupt or missing frames are
        skipped and reported, never fatal. A pipeline: up to ``PREPARE_AHEAD`` chunks are fetched
        and decoded while up to ``PREDICTS_IN_FLIGHT`` chunks are predicted and published, so
        the model server always has work (one request at a time left it idle a third of the
        time; it answers 1.4-1.6x faster with 2-4 requests in flight than with one)."""
        model = self.tracker.current()
        report = ScoreReport(model.version if model else 0)
        bs = max(1, self.s.batch_size)
        todo = iter([frame_ids[i:i + bs] for i in range(0, len(frame_ids), bs)])
        prepared: deque[Future] = deque()
        inflight: deque[Future] = deque()

        def top_up() -> None:
            for chunk in itertools.islice(todo, PREPARE_AHEAD - len(prepared)):
                prepared.append(self._prefetch.submit(self._prepare, chunk, model, report))

        try:
            top_up()
            while prepared:
                ids, x = prepared.popleft().result()
                top_up()
                if ids:
                    inflight.append(self._predictors.submit(self._score_chunk, model, report.version, rescore, ids, x))
                while len(inflight) >= PREDICTS_IN_FLIGHT:
                    report.scored += inflight.popleft().result()
            while inflight:
                report.scored += inflight.popleft().result()
        finally:
            for fut in (*prepared, *inflight):  # an error: let the others finish before reporting it
                fut.exception()
        return report

    def _score_chunk(self, model: ModelInfo | None, version: int, rescore: bool, ids: list[str],
                     x: np.ndarray) -> int:
        """Predict one chunk and publish its event; the number of frames scored."""
        scores = self._model_scores(model, ids, x) if model else self._cold_scores(ids, x)
        event = events_pb2.FramesScored(model_name=self.s.model_name, model_version=version,
                                        scores=scores, scored_at=now_ts(), rescore=rescore)
        self.publisher.publish_sync(topics.FRAMES_SCORED, event, scores[0].frame_id)
        SCORED.labels("rescore" if rescore else ("cold" if not model else "ingest")).inc(len(scores))
        return len(scores)

    def _prepare(self, frame_ids: list[str], model: ModelInfo | None,
                 report: ScoreReport) -> tuple[list[str], np.ndarray]:
        """Fetch and decode (cached frames skip both): the ids that can go to the model and their batch."""
        size, channels = (model.input_size, model.channels) if model else (self.s.cold_input_size, 3)
        cached = {fid: img for fid in frame_ids if (img := self.cache.get(fid, size, channels)) is not None}
        data = self.fetch([fid for fid in frame_ids if fid not in cached]) if len(cached) < len(frame_ids) else {}
        ok_ids: list[str] = []
        batch = np.empty((len(frame_ids), size, size, channels), np.uint8)
        for fid in frame_ids:
            reason = None
            if fid in cached:
                img = cached[fid]
            elif fid not in data:
                reason = "missing in storage"
            else:
                try:
                    img = images.decode_uint8(data[fid], size, channels)
                    reason = check_image(img, size, channels)
                except ValueError as exc:
                    reason = f"corrupt: {exc}"
                if reason is None:
                    self.cache.put(fid, img)
            if reason:
                report.skipped.append((fid, reason))
                SKIPPED.labels(reason.split(":")[0].split(" (")[0]).inc()
                log.warning("frame skipped", extra={"frame_id": fid, "reason": reason})
                continue
            batch[len(ok_ids)] = img
            ok_ids.append(fid)
        return ok_ids, images.to_unit_float(batch[:len(ok_ids)])  # one conversion per batch

    def _cold_scores(self, ids: list[str], x: np.ndarray) -> list[common_pb2.FrameScore]:
        desc = descriptor(x)
        return [common_pb2.FrameScore(frame_id=fid, model_name=self.s.model_name, model_version=0,
                                      embedding=d.tolist())
                for fid, d in zip(ids, desc, strict=True)]

    def _predict(self, model: ModelInfo, x: np.ndarray) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            if model.mc:
                out = self.serving.predict(self.s.model_name, x, version=model.version, signature="mc_dropout")
            else:
                out = self.serving.predict(self.s.model_name, x, version=model.version)
                if model.has_embedding:
                    out.update(self.serving.predict(self.s.model_name, x, version=model.version,
                                                    signature="embedding"))
        except errors.NotFound as exc:  # the version was unloaded under us: re-resolve and retry later
            self.tracker.invalidate()
            raise errors.Unavailable(f"model {self.s.model_name} version {model.version} gone: {exc}") from exc
        PREDICT_SECONDS.observe(time.perf_counter() - start)
        if "probabilities" not in out:
            raise errors.FailedPrecondition(f"model version {model.version} returned no 'probabilities' "
                                            f"(outputs: {sorted(out)})")
        return out

    def _model_scores(self, model: ModelInfo, ids: list[str], x: np.ndarray) -> list[common_pb2.FrameScore]:
        bs = max(1, self.s.batch_size)
        parts = [self._predict(model, x[i:i + bs]) for i in range(0, len(x), bs)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        p = out["probabilities"].astype(np.float64)
        top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.concatenate([np.zeros_like(p), p], 1)
        ent = out.get("entropy", -(p * np.log(p + 1e-12)).sum(1))
        zeros = np.zeros(len(ids))
        bald, vr = out.get("bald", zeros), out.get("variation_ratio", zeros)
        emb = out.get("embedding")
        return [common_pb2.FrameScore(
            frame_id=fid, model_name=self.s.model_name, model_version=model.version,
            probabilities=p[i].tolist(), predicted_class=int(p[i].argmax()),
            least_confidence=float(1 - top2[i, 1]), margin=float(top2[i, 1] - top2[i, 0]),
            entropy=float(ent[i]), bald=float(bald[i]), variation_ratio=float(vr[i]),
            embedding=emb[i].tolist() if emb is not None else [])
            for i, fid in enumerate(ids)]


class CatchUp:
    """Background re-scorer: frames of my partitions without a score under the tracked version."""

    def __init__(self, settings: InferenceSettings, pool: PoolIndex, scorer: Scorer,
                 partitions: Callable[[], set[int]]) -> None:
        self.s = settings
        self.pool = pool
        self.scorer = scorer
        self.partitions = partitions
        self.done: dict[int, set[str]] = {}
        self.forced: int | None = None
        self.error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CatchUp:
        self._thread = threading.Thread(target=self.run, daemon=True, name="inference-catchup")
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def force(self, version: int) -> None:
        """Re-score every frame (all partitions) under ``version`` (Rescore RPC)."""
        self.done.pop(version, None)
        self.forced = version
        self.wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.step()
                self.error = None
            except Exception as exc:  # noqa: BLE001 - keep trying; health shows the error
                self.error = str(exc)
                log.warning("re-score step failed; retrying", extra={"error": str(exc)})
                worked = False
                self._stop.wait(2.0)
            if not worked:
                self._wake.wait(1.0)
                self._wake.clear()

    def step(self) -> bool:
        """Score one batch; True when there was work."""
        model = self.scorer.tracker.current()
        if model is None:
            return False
        version = model.version
        progress = self.pool.progress()
        if not progress.running or progress.version != version:
            return False  # new frames are the ingest consumer's; we only fill a re-score
        if self.forced is not None and progress.version != self.forced:
            self.forced = None
        parts = None if self.forced == version else self.partitions()
        if parts is not None and not parts:
            return False
        done = self.done.setdefault(version, set())
        for old in [v for v in self.done if v != version]:
            del self.done[old]
        # Several model batches per step: Scorer.score overlaps fetching with predicting.
        ids = self.pool.rows_needing(version, parts, self.s.batch_size * RESCORE_BATCHES_PER_STEP, done)
        if not ids:
            return False
        report = self.scorer.score(ids, rescore=True)
        done.update(ids)
        log.info("re-scored batch", extra={"version": report.version, "scored": report.scored,
                                           "skipped": len(report.skipped)})
        return True
