"""Uncertainty scores from class probabilities (numpy, no TensorFlow).

Higher is always "more informative" so every score sorts the same way. These
are the reference formulas; the exported ``mc_dropout`` signature computes the
same quantities in-graph and the tests hold the two together.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def _as_probs(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected probabilities [N, C], got shape {p.shape}")
    return p


def least_confidence(p: np.ndarray) -> np.ndarray:
    """1 - max class probability, per row."""
    return 1.0 - _as_probs(p).max(axis=1)


def margin(p: np.ndarray) -> np.ndarray:
    """1 - (top1 - top2): a small gap between the two best classes is informative."""
    p = _as_probs(p)
    if p.shape[1] < 2:
        return np.zeros(p.shape[0])
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats, per row."""
    p = _as_probs(p)
    return -(p * np.log(p + EPS)).sum(axis=1)


def mc_statistics(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of T stochastic forward passes ``samples[T, N, C]``.

    - ``probabilities``: mean over T (the predictive distribution);
    - ``entropy``: entropy of that mean (total uncertainty);
    - ``bald``: entropy of the mean minus mean per-pass entropy (mutual
      information between prediction and weights: the epistemic part);
    - ``variation_ratio``: 1 - share of passes voting for the modal class.
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"expected samples [T, N, C], got shape {s.shape}")
    t, n, c = s.shape
    mean = s.mean(axis=0)
    total = entropy(mean)
    expected = -(s * np.log(s + EPS)).sum(axis=2).mean(axis=0)
    votes = np.zeros((n, c))
    np.add.at(votes, (np.arange(n)[None, :].repeat(t, 0), s.argmax(axis=2)), 1.0)
    return {
        "probabilities": mean,
        "entropy": total,
        "bald": np.maximum(total - expected, 0.0),
        "variation_ratio": 1.0 - votes.max(axis=1) / t,
    }
