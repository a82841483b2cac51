"""Pool index: event folding, exclusions, cold start, double-buffered re-score, snapshot."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from lumenal.inference import feed, ranking
from lumenal.inference import pool as pool_mod
from lumenal.inference.pool import PoolIndex
from lumenal.inference.scorer import check_image, descriptor
from lumenal.ml import strategies
from lumenal.v1 import common_pb2, events_pb2

MODEL = "frame_triage"


def fid(i: int, video: str = "v1") -> str:
    return f"{video}:{i:06d}"


def score(i: int, version: int, p0: float, emb: list[float] | None = None) -> common_pb2.FrameScore:
    p = [p0, 1 - p0]
    return common_pb2.FrameScore(frame_id=fid(i), model_name=MODEL, model_version=version, probabilities=p,
                                 predicted_class=int(p0 < 0.5), least_confidence=1 - max(p),
                                 margin=abs(p0 - (1 - p0)), entropy=float(-sum(x * np.log(x) for x in p)),
                                 embedding=emb if emb is not None else [float(i), 0.0])


def scored_pool(n: int = 10, version: int = 1) -> PoolIndex:
    pool = PoolIndex(MODEL, cap=4)  # small cap: exercises growth
    pool.add_frames([fid(i) for i in range(n)], partition=0)
    pool.set_target(version)
    # frame i has p0 = 0.5 + i/(2n): frame 0 is the most uncertain
    pool.apply_scores(version, [score(i, version, 0.5 + i / (2 * n) + 1e-3) for i in range(n)])
    return pool


def test_uncertainty_topk_excludes_labeled_and_leased() -> None:
    pool = scored_pool()
    assert pool.live.version == 1 and pool.next is None
    sel = pool.select(3, "least_confidence", "kcenter", [], 0)
    assert [pool.ids[r] for r in sel.rows] == [fid(0), fid(1), fid(2)]
    pool.mark_labeled(fid(0))
    sel = pool.select(3, "margin", "kcenter", [fid(1), "unknown:000001"], 0)
    assert [pool.ids[r] for r in sel.rows] == [fid(2), fid(3), fid(4)]
    assert sel.pool_size == 8 and sel.strategy == "margin" and sel.version == 1


def test_label_before_frame_is_remembered() -> None:
    pool = PoolIndex(MODEL)
    pool.mark_labeled(fid(3))
    pool.add_frames([fid(3), fid(4)])
    assert pool.labeled[pool.rows[fid(3)]] and not pool.labeled[pool.rows[fid(4)]]


def test_unknown_strategy_and_missing_bald() -> None:
    pool = scored_pool()
    with pytest.raises(strategies.UnknownStrategy):
        pool.select(3, "nope", "kcenter", [], 0)
    with pytest.raises(strategies.MissingInput, match="LUMENAL_INFERENCE_MC"):
        pool.select(3, "bald", "kcenter", [], 0)


def test_cold_start_is_diverse_on_descriptors_and_says_so() -> None:
    pool = PoolIndex(MODEL)
    # two tight groups of 20 near-identical thumbnails + 1 outlier
    descs = [[0.0, 0.0]] * 20 + [[10.0, 10.0]] * 20 + [[-10.0, 5.0]]
    pool.add_frames([fid(i) for i in range(len(descs))], 0)
    pool.apply_scores(0, [common_pb2.FrameScore(frame_id=fid(i), embedding=d) for i, d in enumerate(descs)])
    sel = pool.select(3, "margin", "kcenter", [], 0)
    assert sel.strategy == "kcenter" and sel.version == 0
    groups = {0 if r < 20 else 1 if r < 40 else 2 for r in sel.rows.tolist()}
    assert groups == {0, 1, 2}
    assert pool.select(2, "random", "kcenter", [], 0).strategy == "random"


def test_rescore_double_buffer_keeps_old_scores_until_complete() -> None:
    pool = scored_pool(n=6, version=1)
    pool.mark_labeled(fid(5))
    pool.set_target(2)
    assert pool.progress().running and pool.progress().total == 5
    # version 2 reverses the ranking, but only for half the pool so far
    pool.apply_scores(2, [score(i, 2, 0.99 - i / 20) for i in range(3)])
    sel = pool.select(2, "least_confidence", "kcenter", [], 0)
    assert sel.version == 1 and [pool.ids[r] for r in sel.rows] == [fid(0), fid(1)]
    assert pool.progress().done == 3
    assert pool.score(fid(0)).model_version == 2  # GetScore shows the newest
    pool.apply_scores(1, [score(0, 1, 0.6)])  # a late old-version event still lands in live
    pool.apply_scores(2, [score(i, 2, 0.99 - i / 20) for i in range(3, 5)])
    assert not pool.progress().running and pool.live.version == 2
    sel = pool.select(2, "least_confidence", "kcenter", [], 0)
    assert sel.version == 2 and [pool.ids[r] for r in sel.rows] == [fid(4), fid(3)]
    assert pool.apply_scores(1, [score(0, 1, 0.5)]) == 0  # stale version ignored


def test_rows_needing_by_partition_and_skip() -> None:
    pool = PoolIndex(MODEL)
    pool.add_frames([fid(0), fid(1)], partition=0)
    pool.add_frames([fid(2), fid(3)], partition=1)
    pool.set_target(1)
    assert pool.rows_needing(1, {1}, 10, set()) == [fid(2), fid(3)]
    assert pool.rows_needing(1, {1}, 10, {fid(2)}) == [fid(3)]
    assert pool.rows_needing(1, None, 1, set()) == [fid(0)]


def test_shape_mismatch_within_a_version_is_rejected() -> None:
    pool = scored_pool(n=2)
    bad = common_pb2.FrameScore(frame_id=fid(9), model_version=1, probabilities=[0.2, 0.3, 0.5])
    assert pool.apply_scores(1, [bad]) == 0 and pool.rejected == 1


def test_histogram_and_counts() -> None:
    pool = scored_pool(n=10)
    pool.mark_labeled(fid(9))
    edges, counts = pool.histogram("entropy", 5)
    assert counts.sum() == 9 and len(edges) == 6
    assert pool.counts() == {"frames": 10, "scored": 10, "labeled": 1, "model_version": 1}


def test_snapshot_roundtrip(tmp_path: Path) -> None:
    pool = scored_pool(n=7)
    pool.mark_labeled(fid(2))
    pool.mark_labeled("later:000001")
    pool.set_target(3)
    pool.apply_scores(3, [score(1, 3, 0.9)])
    pool.offsets = {"frames.scored:0": 12}
    pool.save(tmp_path / "snap.npz")
    back = PoolIndex.load(tmp_path / "snap.npz", MODEL)
    assert back.ids == pool.ids and back.offsets == pool.offsets and back.target_version == 3
    assert back.next is not None and back.next.version == 3 and back.next.ok[1]
    for k in ("least_confidence", "margin"):
        a, b = pool.select(4, k, "kcenter", [], 1), back.select(4, k, "kcenter", [], 1)
        assert a.rows.tolist() == b.rows.tolist()
    back.add_frames(["later:000001"])
    assert back.labeled[back.rows["later:000001"]]


def test_feed_apply_handles_every_topic() -> None:
    pool = PoolIndex(MODEL)
    metas = [common_pb2.FrameMeta(frame_id=fid(i, "vx"), video_id="vx") for i in range(3)]
    feed.apply(pool, "frames.ingested", 4, events_pb2.FramesIngested(video_id="vx", frames=metas))
    assert len(pool) == 3 and pool.partition[0] == 4
    feed.apply(pool, "models.published", 0, events_pb2.ModelPublished(model_name=MODEL, version=2))
    feed.apply(pool, "models.published", 0, events_pb2.ModelPublished(model_name="other", version=9))
    assert pool.target_version == 2
    feed.apply(pool, "labels.submitted", 0, events_pb2.LabelSubmitted(
        frame_id=fid(0, "vx"), kind=common_pb2.LABEL_KIND_SKIP))
    assert not pool.labeled[0]
    feed.apply(pool, "labels.submitted", 0, events_pb2.LabelSubmitted(
        frame_id=fid(0, "vx"), kind=common_pb2.LABEL_KIND_CLASS))
    feed.apply(pool, "labels.resolved", 0, events_pb2.LabelResolved(frame_id=fid(1, "vx")))
    assert pool.labeled[:3].tolist() == [True, True, False]
    feed.apply(pool, "frames.ingested", 4, events_pb2.FramesIngested(video_id="vx", aborted=True))
    assert pool.counts()["frames"] == 0


def test_descriptor_and_image_checks() -> None:
    x = np.random.default_rng(0).random((3, 64, 64, 3)).astype(np.float32)
    assert descriptor(x).shape == (3, 192)
    assert descriptor(x[:, :5, :5]).shape == (3, 192)
    assert check_image(x[0], 64, 3) is None
    assert "dtype" in check_image(x[0].astype(np.float64), 64, 3)
    assert check_image(np.rint(x[0] * 255).astype(np.uint8), 64, 3) is None  # as decoded
    assert "shape" in check_image(x[0, :32], 64, 3)
    assert "outside" in check_image(x[0] * 2, 64, 3)


def random_score(g: np.random.Generator, frame_id: str, version: int = 1) -> common_pb2.FrameScore:
    p = g.dirichlet(np.full(4, 0.5)).astype(np.float32)
    top2 = np.sort(p)[-2:]
    return common_pb2.FrameScore(
        frame_id=frame_id, model_version=version, probabilities=p.tolist(), predicted_class=int(p.argmax()),
        least_confidence=float(1 - top2[1]), margin=float(top2[1] - top2[0]),
        entropy=float(-(p * np.log(p)).sum()), bald=float(g.random()), embedding=g.normal(size=3).tolist())


def reference_topk(pool: PoolIndex, name: str, k: int, exclude: list[str]) -> list[int]:
    """Brute force: every selectable row sorted by (score desc, row asc)."""
    n = len(pool)
    avail = pool.live.ok[:n] & ~pool.labeled[:n] & ~pool.removed[:n]
    avail[[pool.rows[f] for f in exclude if f in pool.rows]] = False
    rows = np.flatnonzero(avail)
    values = pool.live.values(name, rows)
    return rows[np.lexsort((rows, -values))][:k].tolist()


@pytest.mark.parametrize("background", [False, True])
def test_ranked_topk_matches_brute_force_while_scores_labels_and_removals_arrive(
        background: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_mod, "REBUILD_MIN", 500)  # several re-sorts during the test
    g = np.random.default_rng(4)
    pool = PoolIndex(MODEL)
    if background:
        pool.sync_below = 0  # every re-sort in a thread, as on a 1M-frame pool
    pool.set_target(1)
    pool.apply_scores(1, [random_score(g, fid(i)) for i in range(3000)])
    pool.warm(["margin", "entropy", "least_confidence", "bald"])
    assert pool.live.rank.bases.keys() == {"margin", "entropy", "least_confidence", "bald"}
    for step in range(40):
        batch = [random_score(g, fid(int(i))) for i in g.integers(0, 3000 + 50 * step, 50)]  # re-scores
        batch += [random_score(g, fid(3000 + 50 * step + j)) for j in range(50)]           # new frames
        pool.apply_scores(1, batch)
        for i in g.integers(0, len(pool), 5):
            pool.mark_labeled(fid(int(i)))
        if step % 10 == 3:
            pool.remove_frames([fid(int(i)) for i in g.integers(0, len(pool), 20)])
        if step % 10 == 7:
            pool.add_frames([fid(i) for i in range(len(pool))])  # a rolled-back ingest redone
        leased = [fid(int(i)) for i in g.integers(0, len(pool), 30)]
        for name in ("margin", "entropy", "least_confidence", "bald"):
            got = pool.select(16, name, "kcenter", leased, step).rows.tolist()
            assert got == reference_topk(pool, name, 16, leased), (step, name)
    rank = pool.live.rank
    while rank.building:  # a background re-sort still running
        time.sleep(0.01)
    assert rank.s0 > 3000 + 2000 and rank.stale() <= 700  # re-sorted as the delta grew


def test_ranked_topk_survives_a_version_swap_and_asks_for_more_than_available() -> None:
    g = np.random.default_rng(5)
    pool = PoolIndex(MODEL)
    pool.set_target(1)
    pool.apply_scores(1, [random_score(g, fid(i)) for i in range(40)])
    pool.warm(["diverse_margin"])
    assert pool.live.rank.wanted == {"margin"}
    pool.set_target(2)
    pool.apply_scores(2, [random_score(g, fid(i), 2) for i in range(40)])
    assert pool.live.version == 2 and "margin" in pool.live.rank.bases  # sorted at the swap
    for i in range(30):
        pool.mark_labeled(fid(i))
    assert pool.select(32, "margin", "kcenter", [fid(35)], 0).rows.tolist() == \
        reference_topk(pool, "margin", 32, [fid(35)])
    sel = pool.select(32, "diverse_margin", "kcenter", [fid(35)], 0)
    assert sorted(sel.rows.tolist()) == sorted(reference_topk(pool, "margin", 32, [fid(35)]))
    assert sel.pool_size == 9


def test_frames_removed_when_rankings_were_sorted_come_back_when_re_added() -> None:
    pool = scored_pool(n=10)
    pool.remove_frames([fid(0), fid(1)])
    pool.warm(["least_confidence"])  # sorted while they were gone
    assert [pool.ids[r] for r in pool.select(2, "least_confidence", "kcenter", [], 0).rows] == [fid(2), fid(3)]
    pool.add_frames([fid(0), fid(1)])
    assert [pool.ids[r] for r in pool.select(3, "least_confidence", "kcenter", [], 0).rows] == \
        [fid(0), fid(1), fid(2)]


def test_embeddings_are_int8_per_row_scaled_and_old_float16_snapshots_load(tmp_path: Path) -> None:
    pool = scored_pool(n=5)
    x = np.array([[3.0, -1.5], [0.0, 0.0]], dtype=np.float32)
    pool.live.store_embeddings(slice(0, 2), x)
    assert pool.live.embeddings.dtype == np.int8
    back = pool.live.embedding_rows(5)[np.array([0, 1])]
    assert np.allclose(back, x, atol=3.0 / 254) and not back[1].any()
    pool.save(tmp_path / "snap.npz")
    with np.load(tmp_path / "snap.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "live_emb_scale"}
    arrays["live_embeddings"] = pool.live.embedding_rows(5)[:].astype(np.float16)  # the old format
    np.savez(tmp_path / "old.npz", **arrays)
    old = PoolIndex.load(tmp_path / "old.npz", MODEL)
    assert np.allclose(old.live.embedding_rows(5)[:], pool.live.embedding_rows(5)[:], atol=0.02)


def test_rank_index_keeps_exactly_the_writes_after_the_sort_snapshot() -> None:
    rank = ranking.RankIndex(cap=16)
    for row in (1, 2, 3):
        rank.touch(row)  # nothing sorted yet: no log kept
    rank.building = True
    s0 = rank.seq  # a sort snapshots the columns here...
    for row in (4, 5, 4):
        rank.touch(row)  # ...while scores keep arriving
    rank.install({"margin": np.array([3, 2, 1], dtype=np.int32)}, s0)
    rank.building = False
    assert sorted(rank.delta().tolist()) == [4, 5] and rank.stale() == 3
    rank.touch(2)  # a re-scored row leaves its base position
    values = np.array([0, 0.5, 0.6, 0.7, 0.9, 0.1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    available = np.ones(16, dtype=bool)
    assert rank.top("margin", 4, available, lambda r: values[r]).tolist() == [4, 3, 2, 1]
    available[4] = False
    assert rank.top("margin", 2, available, lambda r: values[r]).tolist() == [3, 2]
    assert rank.top("entropy", 2, available, lambda r: values[r]) is None
