"""Selection strategies on hand-made pools with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lumenal.ml import strategies as S

P = np.array([
    [0.98, 0.01, 0.01],   # 0 confident
    [0.34, 0.33, 0.33],   # 1 near uniform: most uncertain by every measure
    [0.50, 0.49, 0.01],   # 2 tiny margin, moderate entropy
    [0.70, 0.20, 0.10],   # 3
    [0.90, 0.05, 0.05],   # 4
], dtype=np.float32)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_least_confidence_ranks_by_max_probability() -> None:
    assert S.get("least_confidence").select(S.Pool(probabilities=P), 5, rng()).tolist() == [1, 2, 3, 4, 0]


def test_margin_ranks_by_gap_between_best_two() -> None:
    # gaps: 0.97, 0.01, 0.01, 0.50, 0.85 -> rows 1 and 2 tie on the gap (stable order), then 3, 4, 0
    assert S.get("margin").select(S.Pool(probabilities=P), 5, rng()).tolist() == [1, 2, 3, 4, 0]
    # the precomputed column gives the same answer
    gap = np.array([0.97, 0.01, 0.02, 0.5, 0.85], dtype=np.float32)
    assert S.get("margin").select(S.Pool(margin=gap), 3, rng()).tolist() == [1, 2, 3]


def test_entropy_prefers_spread_over_two_way_ties() -> None:
    out = S.get("entropy").select(S.Pool(probabilities=P), 5, rng()).tolist()
    assert out[0] == 1 and out[-1] == 0
    assert out.index(3) < out.index(4)


def test_bald_uses_mc_statistics_and_fails_clearly_without() -> None:
    bald = np.array([0.0, 0.1, 0.9, 0.3, 0.2], dtype=np.float32)
    assert S.get("bald").select(S.Pool(probabilities=P, bald=bald), 2, rng()).tolist() == [2, 3]
    with pytest.raises(S.MissingInput, match="bald.*MC-dropout"):
        S.get("bald").select(S.Pool(probabilities=P), 2, rng())


def test_available_mask_and_k_larger_than_pool() -> None:
    avail = np.array([True, False, True, True, False])
    out = S.get("least_confidence").select(S.Pool(probabilities=P, available=avail), 10, rng())
    assert out.tolist() == [2, 3, 0]
    assert S.get("margin").select(S.Pool(probabilities=P), 0, rng()).tolist() == []
    with pytest.raises(ValueError):
        S.get("margin").select(S.Pool(probabilities=P), -1, rng())


def test_top_k_is_exact_on_large_pools_with_nans_and_mask() -> None:
    g = np.random.default_rng(1)
    score = g.random(200_000).astype(np.float32)
    score[g.integers(0, 200_000, 500)] = np.nan
    avail = g.random(200_000) > 0.3
    got = S.top_k(score, 50, avail)
    ref = np.where(avail & ~np.isnan(score), score, -np.inf)
    want = np.argsort(-ref, kind="stable")[:50]
    assert np.array_equal(np.sort(got), np.sort(want))
    assert np.all(np.diff(score[got]) <= 0)
    # adversarial order (sorted ascending) still exact
    asc = np.sort(g.random(100_000))
    assert S.top_k(asc, 5).tolist() == [99_999, 99_998, 99_997, 99_996, 99_995]


def test_random_is_distinct_available_and_seeded() -> None:
    avail = np.zeros(1000, dtype=bool)
    avail[::3] = True
    pool = S.Pool(available=avail)
    a = S.get("random").select(pool, 50, np.random.default_rng(7))
    b = S.get("random").select(pool, 50, np.random.default_rng(7))
    assert np.array_equal(a, b) and len(set(a.tolist())) == 50 and avail[a].all()
    assert len(S.get("random").select(S.Pool(size=4), 10, rng())) == 4


def clusters(n_per: int = 40, centers: int = 5, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    c = g.normal(size=(centers, dim)) * 10
    emb = np.concatenate([c[i] + g.normal(scale=0.1, size=(n_per, dim)) for i in range(centers)])
    return emb.astype(np.float32), np.repeat(np.arange(centers), n_per)


def test_kcenter_covers_every_cluster_once() -> None:
    emb, cluster = clusters()
    out = S.get("kcenter").select(S.Pool(embeddings=emb), 5, rng())
    assert sorted(cluster[out].tolist()) == [0, 1, 2, 3, 4]


def test_kcenter_seeded_by_labeled_picks_uncovered_clusters() -> None:
    emb, cluster = clusters()
    labeled = emb[cluster < 3][::10]
    out = S.get("kcenter").select(S.Pool(embeddings=emb, labeled_embeddings=labeled), 2, rng())
    assert sorted(cluster[out].tolist()) == [3, 4]
    with pytest.raises(S.MissingInput, match="embeddings"):
        S.get("kcenter").select(S.Pool(probabilities=P), 2, rng())


def test_kcenter_candidate_cap_keeps_results_available() -> None:
    emb, _ = clusters(n_per=400)
    avail = np.ones(len(emb), dtype=bool)
    avail[:1000] = False
    strat = S.KCenterStrategy(max_candidates=300)
    out = strat.select(S.Pool(embeddings=emb, available=avail), 10, rng())
    assert len(set(out.tolist())) == 10 and avail[out].all()


def duplicate_heavy_pool() -> tuple[S.Pool, np.ndarray]:
    """50 near-identical, very uncertain frames + 4 distinct, fairly uncertain groups."""
    g = np.random.default_rng(3)
    emb, cluster = clusters(n_per=50, centers=5, seed=3)
    probs = np.empty((len(emb), 2), dtype=np.float32)
    first = 0.5 + np.where(cluster == 0, 0.01, 0.15) + g.uniform(0, 0.01, len(emb))
    probs[:, 0], probs[:, 1] = first, 1 - first
    return S.Pool(probabilities=probs, embeddings=emb), cluster


def test_margin_alone_picks_near_duplicates_but_diverse_margin_spreads() -> None:
    pool, cluster = duplicate_heavy_pool()
    plain = S.get("margin").select(pool, 5, rng())
    assert set(cluster[plain].tolist()) == {0}
    diverse = S.get("diverse_margin").select(pool, 5, rng())
    assert sorted(cluster[diverse].tolist()) == [0, 1, 2, 3, 4]
    assert cluster[diverse[0]] == 0  # the most uncertain group still comes first


def test_badge_batch_is_uncertain_and_diverse() -> None:
    pool, cluster = duplicate_heavy_pool()
    probs = pool.probabilities.copy()
    probs[cluster == 4] = [0.999, 0.001]  # a confident group: tiny gradients
    pool = S.Pool(probabilities=probs, embeddings=pool.embeddings)
    out = S.get("badge").select(pool, 4, rng())
    assert sorted(cluster[out].tolist()) == [0, 1, 2, 3]
    with pytest.raises(S.MissingInput):
        S.get("badge").select(S.Pool(probabilities=P), 2, rng())


def test_badge_prefilter_path_on_larger_pool() -> None:
    g = np.random.default_rng(5)
    n = 20_000
    probs = g.dirichlet(np.ones(4), n).astype(np.float32)
    emb = g.normal(size=(n, 16)).astype(np.float16)
    out = S.BadgeStrategy(max_candidates=500).select(S.Pool(probabilities=probs, embeddings=emb), 16, rng())
    assert len(set(out.tolist())) == 16


def test_registry() -> None:
    assert {"random", "least_confidence", "margin", "entropy", "bald", "kcenter", "badge",
            "diverse_margin"} <= set(S.names())
    for name in S.names():
        assert isinstance(S.get(name), S.Strategy)
        assert name in S.NEEDS and name in S.DESCRIPTIONS
    with pytest.raises(S.UnknownStrategy, match="unknown strategy 'nope'"):
        S.get("nope")
    assert issubclass(S.UnknownStrategy, ValueError)


def test_ranked_index_gives_the_rows_of_the_full_pass() -> None:
    """A caller's ``Pool.ranked`` (the inference service's sorted index) replaces the scan, same answer."""
    g = np.random.default_rng(8)
    n = 5_000
    probs = g.dirichlet(np.ones(4), n).astype(np.float32)
    plain = S.Pool(probabilities=probs, embeddings=g.normal(size=(n, 8)).astype(np.float32),
                   labeled_embeddings=g.normal(size=(40, 8)).astype(np.float32),
                   bald=g.random(n).astype(np.float32), available=g.random(n) > 0.2)
    asked: list[tuple[str, int]] = []

    def ranked(name: str, m: int) -> np.ndarray:
        asked.append((name, m))
        return S.top_k(S.SCORES[name](plain, name), m, plain.available)

    indexed = S.Pool(**{**plain.__dict__, "ranked": ranked})
    for name in ("margin", "entropy", "least_confidence", "bald", "diverse_margin", "diverse_bald"):
        want = S.get(name).select(plain, 16, np.random.default_rng(1))
        got = S.get(name).select(indexed, 16, np.random.default_rng(1))
        assert got.tolist() == want.tolist(), name
    assert asked[0] == ("margin", 16) and ("margin", 200) in asked  # diverse_* read their top-M
    with pytest.raises(S.MissingInput, match="bald"):
        S.get("diverse_bald").select(S.Pool(**{**indexed.__dict__, "bald": None}), 4, rng())


def test_random_on_a_large_pool_draws_available_rows_uniformly() -> None:
    avail = np.zeros(200_000, dtype=bool)
    avail[::2] = True
    avail[:1000] = False
    counts = np.zeros(200_000)
    for seed in range(200):
        out = S.get("random").select(S.Pool(available=avail), 50, np.random.default_rng(seed))
        assert len(set(out.tolist())) == 50 and avail[out].all()
        counts[out] += 1
    halves = counts[:100_000].sum(), counts[100_000:].sum()
    assert abs(halves[0] - halves[1]) < 0.1 * sum(halves)  # no part of the pool favoured
    sparse = np.zeros(200_000, dtype=bool)
    sparse[[5, 70_000, 199_999]] = True  # too few to find by drawing: falls back to the row list
    assert sorted(S.get("random").select(S.Pool(available=sparse), 10, rng()).tolist()) == [5, 70_000, 199_999]
