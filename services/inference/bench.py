"""TopK latency and memory at pool scale (a measurement, not a test).

``python -m lumenal.inference.bench --frames 1000000`` fills a pool index with
synthetic scores (random Dirichlet probabilities, Gaussian embeddings; 1% labeled),
sorts the rankings the measured strategies read (as a replica does at startup),
then times ``TopK`` through a real gRPC server on loopback, with 100 leased
frames excluded per call, and prints p50/p95 per strategy plus the memory the
index uses per million frames. ``--churn N`` keeps N newly scored frames per
second arriving (``apply_scores`` in batches of 64, like the pool feed) while
it measures. ``cpu_ms`` is the process CPU time per call (client, server and
churn together): the number that load on a shared host multiplies.
The benchmark helper imports ``measure``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the service runs (see __main__.py)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lumenal.core import auth, grpc_server  # noqa: E402
from lumenal.core.config import from_env  # noqa: E402
from lumenal.v1 import common_pb2  # noqa: E402

from .pool import PoolIndex, ScoreSet  # noqa: E402
from .settings import InferenceSettings  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def synthetic_pool(n: int, classes: int = 14, dim: int = 128, seed: int = 0,
                   model_name: str = "bench") -> PoolIndex:
    """A pool of ``n`` scored frames written straight into the columns (events would take minutes)."""
    rng = np.random.default_rng(seed)
    pool = PoolIndex(model_name, cap=n)
    pool.ids = [f"bench{i // 100_000}:{i % 100_000:06d}" for i in range(n)]
    pool.rows = {f: i for i, f in enumerate(pool.ids)}
    s = ScoreSet(1, n)
    s._shape(classes, dim)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        p = rng.dirichlet(np.full(classes, 0.3), hi - lo).astype(np.float32)
        top2 = np.sort(p, axis=1)[:, -2:]
        s.probabilities[lo:hi] = p
        s.store_embeddings(slice(lo, hi), rng.normal(size=(hi - lo, dim)))
        s.predicted[lo:hi] = p.argmax(1)
        s.cols["least_confidence"][lo:hi] = 1 - top2[:, 1]
        s.cols["margin"][lo:hi] = top2[:, 1] - top2[:, 0]
        s.cols["entropy"][lo:hi] = -(p * np.log(p + 1e-12)).sum(1)
        s.cols["bald"][lo:hi] = rng.gamma(1.0, 0.05, hi - lo)
        s.cols["variation_ratio"][lo:hi] = rng.random(hi - lo)
    s.ok[:n] = True
    s.has_bald = True
    pool.live = s
    pool.target_version = 1
    for fid in pool.ids[: n // 100]:
        pool.mark_labeled(fid)
    return pool


def _churn(pool: PoolIndex, per_s: float, stop: threading.Event, classes: int = 14, dim: int = 128) -> None:
    """Newly scored frames arriving at ``per_s`` a second, in feed-sized batches of 64."""
    rng = np.random.default_rng(1)
    i = 0
    while not stop.wait(64 / per_s):
        p = rng.dirichlet(np.full(classes, 0.3), 64).astype(np.float32)
        top2 = np.sort(p, axis=1)[:, -2:]
        emb = rng.normal(size=(64, dim)).astype(np.float32)
        pool.apply_scores(1, [common_pb2.FrameScore(
            frame_id=f"churn:{i + j:06d}", model_version=1, probabilities=p[j].tolist(),
            predicted_class=int(p[j].argmax()), least_confidence=float(1 - top2[j, 1]),
            margin=float(top2[j, 1] - top2[j, 0]), entropy=float(-(p[j] * np.log(p[j] + 1e-12)).sum()),
            bald=float(rng.gamma(1.0, 0.05)), embedding=emb[j].tolist()) for j in range(64)])
        i += 64


def measure(frames: int = 1_000_000, k: int = 32, calls: int = 50,
            strategies: tuple[str, ...] = ("margin", "entropy", "bald", "diverse_margin"),
            exclude: int = 100, seed: int = 0, churn: float = 0.0) -> dict[str, object]:
    """Latency percentiles (ms) of TopK over gRPC per strategy, and index memory per million frames."""
    from lumenal.inference.server import InferenceServicer
    from lumenal.v1 import inference_pb2, inference_pb2_grpc

    before = rss_bytes()
    pool = synthetic_pool(frames, seed=seed)
    t = time.perf_counter()
    pool.warm(strategies)
    warm_s = time.perf_counter() - t
    mem = rss_bytes() - before
    if churn > 0:  # room for the arriving frames now, not one doubling mid-measurement
        with pool.lock:
            pool._grow(frames + int(churn * calls))
    settings = from_env(InferenceSettings, environ={}, auth_secret="bench", model_name="bench")
    srv = grpc_server.start("inference-bench", 0, [(inference_pb2_grpc.add_InferenceServiceServicer_to_server,
                                                    InferenceServicer(settings, pool),
                                                    "lumenal.v1.InferenceService")], metrics_port=-1)
    md = auth.metadata(auth.service_token("bench", "bench"))
    rng = np.random.default_rng(seed)
    out: dict[str, object] = {"frames": frames, "k": k, "calls": calls, "excluded_per_call": exclude,
                              "index_bytes_per_million": int(mem * 1_000_000 / frames),
                              "rank_sort_s": round(warm_s, 2), "churn_frames_per_s": churn}
    builds = pool.live.rank.builds
    stop = threading.Event()
    if churn > 0:
        threading.Thread(target=_churn, args=(pool, churn, stop), daemon=True, name="churn").start()
    # BLAS threads as the service runs them, also when numpy was imported before this module
    # (then the environment variable above comes too late: `lumenal bench system`)
    blas = threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")
    try:
        with grpc_server.channel(f"127.0.0.1:{srv.port}") as ch:
            stub = inference_pb2_grpc.InferenceServiceStub(ch)
            for name in strategies:
                times, cpu = [], 0.0
                for _ in tqdm(range(calls + 3), desc=f"TopK {name}", leave=False):
                    leased = [pool.ids[i] for i in rng.integers(0, frames, exclude)]
                    req = inference_pb2.TopKRequest(k=k, strategy=name, exclude_frame_ids=leased,
                                                    seed=int(rng.integers(1 << 30)))
                    t, c = time.perf_counter(), time.process_time()
                    resp = stub.TopK(req, metadata=md)
                    times.append(time.perf_counter() - t)
                    cpu += (time.process_time() - c) if len(times) > 3 else 0.0
                    assert len(resp.frames) == k
                ms = np.asarray(times[3:]) * 1000  # first calls warm caches
                out[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 2),
                             "p95_ms": round(float(np.percentile(ms, 95)), 2),
                             "cpu_ms": round(cpu * 1000 / calls, 2)}
    finally:
        blas.restore_original_limits()
        stop.set()
        srv.stop(0)
    out["rank_resorts_while_timing"] = pool.live.rank.builds - builds
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lumenal.inference.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--strategies", default="margin,entropy,bald,diverse_margin")
    ap.add_argument("--churn", type=float, default=0.0, help="newly scored frames per second during timing")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.frames, args.k, args.calls, tuple(args.strategies.split(",")),
                             churn=args.churn), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
