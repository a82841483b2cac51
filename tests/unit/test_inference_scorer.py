"""Scorer and ModelTracker with fake storage / model server: skips, versions, signatures."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lumenal.core import errors
from lumenal.core.config import from_env
from lumenal.inference.pool import PoolIndex
from lumenal.inference.scorer import ModelTracker, Scorer
from lumenal.inference.settings import InferenceSettings
from lumenal.ml import images
from lumenal.v1 import common_pb2, storage_pb2

SIG = {"inputs": {"images": ("DT_FLOAT", (-1, 16, 16, 3))}, "outputs": {}}


class FakeServing:
    def __init__(self, versions: dict[int, str], sigs: tuple[str, ...] = ("serving_default", "mc_dropout",
                                                                         "embedding")) -> None:
        self.versions, self.sigs, self.calls = versions, sigs, []
        self.gone = False

    def model_status(self, name: str) -> list[tuple[int, str]]:
        return sorted(self.versions.items())

    def latest_version(self, name: str) -> int | None:
        ok = [v for v, s in self.versions.items() if s == "AVAILABLE"]
        return max(ok) if ok else None

    def metadata(self, name: str, version: int | None = None) -> dict:
        return {"version": version, "signatures": {s: SIG for s in self.sigs}}

    def predict(self, name: str, x: np.ndarray, version: int | None = None, signature: str = "serving_default"):
        self.calls.append((version, signature, x.shape, x.dtype))
        if self.gone:
            raise errors.NotFound(f"version {version} not found")
        n = len(x)
        p = np.tile([0.7, 0.3], (n, 1)).astype(np.float32)
        if signature == "embedding":
            return {"embedding": np.ones((n, 4), np.float32)}
        out = {"probabilities": p}
        if signature == "mc_dropout":
            out.update(entropy=np.full(n, 0.6), bald=np.full(n, 0.1), variation_ratio=np.zeros(n),
                       embedding=np.ones((n, 4), np.float32))
        return out


class FakeStorage:
    def __init__(self, frames: dict[str, bytes]) -> None:
        self.frames = frames

    def GetFrames(self, req, metadata=None, timeout=None):  # noqa: ANN001, ANN201, N802
        return [storage_pb2.Frame(meta=common_pb2.FrameMeta(frame_id=f), image=self.frames[f])
                for f in req.frame_ids if f in self.frames]


class FakePublisher:
    def __init__(self) -> None:
        self.sent = []

    def publish_sync(self, topic, msg, key) -> None:  # noqa: ANN001
        self.sent.append((topic, msg, key))


def settings(**kw: object) -> InferenceSettings:
    return from_env(InferenceSettings, environ={}, model_name="m", model_poll_s=0.0, **kw)


def png(seed: int, shape: tuple[int, ...] = (20, 30, 3)) -> bytes:
    return images.encode_png(np.random.default_rng(seed).random(shape))


def test_tracker_waits_for_published_version_then_gives_up() -> None:
    pool = PoolIndex("m")
    serving = FakeServing({1: "AVAILABLE", 2: "LOADING"})
    tracker = ModelTracker(settings(version_wait_s=0.0), serving, pool)
    assert tracker.current().version == 1  # no event yet: newest available
    pool.set_target(2)
    tracker = ModelTracker(settings(version_wait_s=60.0), serving, pool)
    with pytest.raises(errors.Unavailable, match="version 2 is LOADING"):
        tracker.current()
    serving.versions[2] = "AVAILABLE"
    info = tracker.current()
    assert info.version == 2 and info.input_size == 16 and info.mc
    pool.set_target(3)  # never appears; zero wait -> keep version 2, stop waiting for its scores
    tracker.s = settings(version_wait_s=0.0)
    assert tracker.current().version == 2 and pool.next is None


def test_tracker_signature_fallback_and_clear_error() -> None:
    pool = PoolIndex("m")
    info = ModelTracker(settings(), FakeServing({1: "AVAILABLE"}, ("serving_default", "embedding")), pool).current()
    assert not info.mc and info.has_embedding
    tracker = ModelTracker(settings(), FakeServing({1: "AVAILABLE"}, ("embedding",)), pool)
    with pytest.raises(errors.FailedPrecondition, match="neither mc_dropout nor serving_default"):
        tracker.current()
    assert tracker.error


def scorer(frames: dict[str, bytes], serving: FakeServing) -> tuple[Scorer, FakePublisher]:
    s = settings(batch_size=2)
    pub = FakePublisher()
    return Scorer(s, FakeStorage(frames), serving, ModelTracker(s, serving, PoolIndex("m")), pub), pub


def test_corrupt_and_missing_frames_are_skipped_and_reported() -> None:
    frames = {"v:000000": png(0), "v:000001": b"\x89PNG broken", "v:000002": b"", "v:000003": png(3, (5, 500, 4))}
    serving = FakeServing({4: "AVAILABLE"})
    sc, pub = scorer(frames, serving)
    report = sc.score(["v:000000", "v:000001", "v:000002", "v:000003", "v:000009"])
    assert report.scored == 2 and report.version == 4
    reasons = dict(report.skipped)
    assert reasons["v:000001"].startswith("corrupt") and reasons["v:000002"].startswith("corrupt")
    assert reasons["v:000009"] == "missing in storage"
    topic, event, key = min(pub.sent, key=lambda sent: sent[2])
    assert topic == "frames.scored" and key == "v:000000" and event.model_version == 4
    s0 = event.scores[0]
    assert s0.bald == pytest.approx(0.1) and s0.margin == pytest.approx(0.4) and len(s0.embedding) == 4
    assert all(c[0] == 4 and c[1] == "mc_dropout" and c[2][1:] == (16, 16, 3) and c[3] == np.float32
               for c in serving.calls)  # explicit version, model's input size, float32
    # One event per batch_size (2) chunk that has a scorable frame: [0, 1] -> 0, [2, 3] -> 3, [9] -> none.
    assert sorted([s.frame_id for s in e.scores] for _, e, _ in pub.sent) == [["v:000000"], ["v:000003"]]
    assert sc.score(["v:000001"]).scored == 0 and len(pub.sent) == 2  # nothing to publish


def test_cold_start_publishes_descriptors_with_version_zero() -> None:
    sc, pub = scorer({"v:000000": png(0)}, FakeServing({}))
    assert sc.score(["v:000000"]).version == 0
    event = pub.sent[0][1]
    assert event.model_version == 0 and len(event.scores[0].embedding) == 192 and not event.scores[0].probabilities


def test_unloaded_version_is_a_transient_error() -> None:
    serving = FakeServing({1: "AVAILABLE"})
    sc, _ = scorer({"v:000000": png(0)}, serving)
    serving.gone = True
    with pytest.raises(errors.Unavailable, match="version 1 gone"):
        sc.score(["v:000000"])


def test_the_next_chunk_is_fetched_while_the_current_one_is_predicted() -> None:
    """Fetch+decode of chunk i+1 overlaps Predict of chunk i (the re-score's throughput)."""
    log: list[str] = []

    class SlowServing(FakeServing):
        def predict(self, name, x, version=None, signature="serving_default"):  # noqa: ANN001, ANN201
            log.append("predict-start")
            time.sleep(0.2)
            log.append("predict-end")
            return super().predict(name, x, version, signature)

    class LoggingStorage(FakeStorage):
        def GetFrames(self, req, metadata=None, timeout=None):  # noqa: ANN001, ANN201, N802
            log.append("fetch")
            return super().GetFrames(req, metadata, timeout)

    serving = SlowServing({4: "AVAILABLE"})
    frames = {f"v:{i:06d}": png(i) for i in range(6)}
    s = settings(batch_size=2)
    pub = FakePublisher()
    sc = Scorer(s, LoggingStorage(frames), serving, ModelTracker(s, serving, PoolIndex("m")), pub)
    assert sc.score(sorted(frames), rescore=True).scored == 6 and len(pub.sent) == 3
    # chunk 2 is fetched before chunk 1's prediction ends, chunk 3 before chunk 2's
    assert log.index("fetch", 1) < log.index("predict-end")
    assert log.index("fetch", log.index("fetch", 1) + 1) < log.index("predict-end", log.index("predict-end") + 1)


def test_a_rescore_takes_decoded_frames_from_the_cache_not_storage() -> None:
    """The second pass over the same frames fetches nothing; corrupt frames are never cached."""
    fetched: list[list[str]] = []

    class CountingStorage(FakeStorage):
        def GetFrames(self, req, metadata=None, timeout=None):  # noqa: ANN001, ANN201, N802
            fetched.append(list(req.frame_ids))
            return super().GetFrames(req, metadata, timeout)

    serving = FakeServing({1: "AVAILABLE"})
    frames = {f"v:{i:06d}": png(i) for i in range(4)} | {"v:000004": b"corrupt"}
    s = settings(batch_size=8)
    pub = FakePublisher()
    sc = Scorer(s, CountingStorage(frames), serving, ModelTracker(s, serving, PoolIndex("m")), pub)
    first = sc.score(sorted(frames))
    again = sc.score(sorted(frames), rescore=True)
    assert first.scored == again.scored == 4 and len(sc.cache) == 4
    assert fetched == [sorted(frames), ["v:000004"]]  # only the uncacheable corrupt frame again
    assert [r for _, r in again.skipped][0].startswith("corrupt")
    assert serving.calls[0][2:] == serving.calls[-1][2:] == ((4, 16, 16, 3), np.float32)


def test_frame_cache_admits_until_its_budget_and_never_evicts() -> None:
    from lumenal.inference.framecache import FrameCache

    img = np.zeros((8, 8, 3), np.uint8)  # 192 bytes
    cache = FrameCache(max_bytes=400)
    assert cache.put("a", img) and cache.put("b", img) and not cache.put("c", img)
    assert cache.get("a", 8, 3) is not None and cache.get("c", 8, 3) is None
    assert cache.get("a", 16, 3) is None  # another model input size: a miss, not a wrong array
    assert cache.bytes == 384 and len(cache) == 2
    with pytest.raises(ValueError):
        cache.get("a", 8, 3)[0, 0, 0] = 1  # read-only: a batch can't alter the cached frame
    assert FrameCache(0).put("a", img) is False  # LUMENAL_INFERENCE_FRAME_CACHE_MB=0: off
