"""Consensus over votes and inter-annotator agreement (Cohen's and Fleiss' kappa) in numpy.

Kept free of database code so the statistics are unit-tested against
scikit-learn and statsmodels directly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TIE, DISAGREEMENT, UNSURE = "tie", "disagreement", "unsure"


@dataclass(frozen=True)
class Outcome:
    """The result of consensus: a label, or the reason it needs a reviewer."""

    label: str | None
    votes: int        # answers that agree with ``label`` (or the top count when unresolved)
    answers: int      # answers considered (class votes + unsure)
    reason: str = ""  # "" when resolved; tie | disagreement | unsure

    @property
    def resolved(self) -> bool:
        return self.label is not None


def consensus(answers: Sequence[str | None]) -> Outcome:
    """Strict majority over all answers; ``None`` is an "unsure" answer.

    A class wins when it has more than half of the answers, so "unsure" counts
    against agreement. Equal top counts are a tie; no strict majority is a
    disagreement; only unsure answers go to a reviewer as "unsure".
    """
    n = len(answers)
    counts = Counter(a for a in answers if a is not None).most_common()
    if not counts:
        return Outcome(None, 0, n, UNSURE)
    top, top_n = counts[0]
    if len(counts) > 1 and counts[1][1] == top_n:
        return Outcome(None, top_n, n, TIE)
    if 2 * top_n > n:
        return Outcome(top, top_n, n, "")
    return Outcome(None, top_n, n, DISAGREEMENT)


def _codes(*columns: Sequence[str]) -> tuple[list[np.ndarray], int]:
    categories = sorted({c for col in columns for c in col})
    index = {c: i for i, c in enumerate(categories)}
    return [np.array([index[c] for c in col], dtype=np.int64) for col in columns], len(categories)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters over the same items (NaN when undefined: chance agreement is 1)."""
    if len(a) != len(b):
        raise ValueError("raters must label the same items")
    if not a:
        return float("nan")
    (x, y), k = _codes(a, b)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (x, y), 1.0)
    n = confusion.sum()
    observed = np.trace(confusion) / n
    expected = float(confusion.sum(1) @ confusion.sum(0)) / (n * n)
    if expected == 1.0:
        return float("nan")
    return float((observed - expected) / (1.0 - expected))


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa from an items x categories count table.

    Items may have different numbers of raters (each needs at least 2): the
    per-item agreement uses that item's own count, which equals Fleiss' formula
    when every item has the same number of raters.
    """
    table = np.asarray(table, dtype=np.float64)
    raters = table.sum(1)
    if table.size == 0 or (raters < 2).any():
        raise ValueError("every item needs at least two ratings")
    p_item = ((table * (table - 1)).sum(1)) / (raters * (raters - 1))
    p_cat = table.sum(0) / table.sum()
    expected = float((p_cat ** 2).sum())
    if expected == 1.0:
        return float("nan")
    return float((p_item.mean() - expected) / (1.0 - expected))


def count_table(items: Sequence[Sequence[str]]) -> np.ndarray:
    """Items (each a list of class answers) -> items x categories count table."""
    categories = sorted({c for item in items for c in item})
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(items), len(categories)), dtype=np.int64)
    for row, item in enumerate(items):
        for c in item:
            table[row, index[c]] += 1
    return table
