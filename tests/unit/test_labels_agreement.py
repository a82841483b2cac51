"""Consensus rules and kappas, checked against scikit-learn and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from lumenal.labels.agreement import (
    DISAGREEMENT,
    TIE,
    UNSURE,
    cohen_kappa,
    consensus,
    count_table,
    fleiss_kappa,
)


@pytest.mark.parametrize(("answers", "label", "reason"), [
    (["a"], "a", ""),
    (["a", "a"], "a", ""),
    (["a", "b"], None, TIE),
    (["a", "a", "b"], "a", ""),
    (["a", "b", "c"], None, TIE),
    (["a", None], None, DISAGREEMENT),          # unsure counts against a majority
    (["a", "a", None], "a", ""),
    (["a", "a", "b", "b", "c"], None, TIE),
    (["a", "a", "b", "c", "d"], None, DISAGREEMENT),
    ([None], None, UNSURE),
    ([None, None], None, UNSURE),
])
def test_consensus(answers, label, reason):
    out = consensus(answers)
    assert (out.label, out.reason, out.answers) == (label, reason, len(answers))
    assert out.resolved == (label is not None)


def test_consensus_counts_votes():
    assert consensus(["x", "y", "x"]).votes == 2


def test_cohen_matches_sklearn_on_random_raters():
    rng = np.random.default_rng(0)
    classes = np.array(["polyp", "blood", "normal", "ulcer"])
    for trial in range(50):
        n = int(rng.integers(5, 200))
        a = rng.choice(classes, n)
        flip = rng.random(n) < rng.random()  # agreement level varies per trial
        b = np.where(flip, rng.choice(classes, n), a)
        expected = cohen_kappa_score(a, b)
        assert cohen_kappa(list(a), list(b)) == pytest.approx(expected, abs=1e-12), trial


def test_cohen_with_disjoint_label_sets_matches_sklearn():
    a, b = ["x", "x", "y", "z"], ["x", "w", "y", "y"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_cohen_perfect_and_undefined():
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # chance agreement 1: undefined
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


def test_fleiss_matches_statsmodels():
    rng = np.random.default_rng(1)
    for trial in range(50):
        items, raters, cats = int(rng.integers(3, 60)), int(rng.integers(2, 7)), int(rng.integers(2, 6))
        truth = rng.integers(0, cats, items)
        noise = rng.random()
        votes = np.where(rng.random((items, raters)) < noise, rng.integers(0, cats, (items, raters)),
                         truth[:, None])
        table = np.stack([(votes == c).sum(1) for c in range(cats)], axis=1)
        table = table[:, table.sum(0) > 0]  # statsmodels divides by zero on unused categories
        expected = sm_fleiss(table)
        if math.isnan(expected):
            assert math.isnan(fleiss_kappa(table))
        else:
            assert fleiss_kappa(table) == pytest.approx(expected, abs=1e-12), trial


def test_fleiss_textbook_example():
    """Fleiss (1971) style table from Wikipedia: kappa = 0.210."""
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                      [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                      [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)
    assert fleiss_kappa(table) == pytest.approx(sm_fleiss(table))


def test_fleiss_variable_raters_and_errors():
    # With different rater counts per item, each item uses its own count.
    table = count_table([["a", "a"], ["a", "b", "b"], ["b", "b", "b", "b"]])
    p_items = np.array([1.0, 1 / 3, 1.0])
    p_cat = np.array([3, 6]) / 9
    expected = (p_items.mean() - (p_cat ** 2).sum()) / (1 - (p_cat ** 2).sum())
    assert fleiss_kappa(table) == pytest.approx(expected)
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[1, 0]]))
    assert math.isnan(fleiss_kappa(count_table([["a", "a"], ["a", "a"]])))


def test_count_table():
    table = count_table([["b", "a"], ["a", "a", "c"]])
    assert table.tolist() == [[1, 1, 0], [2, 0, 1]]
