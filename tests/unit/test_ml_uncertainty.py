"""Uncertainty formulas against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from lumenal.ml import uncertainty as U


def test_least_confidence_margin_entropy_known_values() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]])
    np.testing.assert_allclose(U.least_confidence(p), [0.0, 0.5, 2 / 3, 0.4])
    np.testing.assert_allclose(U.margin(p), [0.0, 1.0, 1.0, 0.7])
    np.testing.assert_allclose(U.entropy(p), [0.0, np.log(2), np.log(3),
                                               -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1))],
                               atol=1e-9)


def test_mc_statistics_disagreeing_confident_passes_have_high_bald() -> None:
    # Two passes, each certain but of different classes: total entropy log 2, expected 0.
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    st = U.mc_statistics(samples)
    np.testing.assert_allclose(st["probabilities"], [[0.5, 0.5]])
    np.testing.assert_allclose(st["entropy"], [np.log(2)], atol=1e-9)
    np.testing.assert_allclose(st["bald"], [np.log(2)], atol=1e-9)
    np.testing.assert_allclose(st["variation_ratio"], [0.5])


def test_mc_statistics_agreeing_uncertain_passes_have_zero_bald() -> None:
    samples = np.tile(np.array([[[0.5, 0.5], [0.9, 0.1]]]), (4, 1, 1))
    st = U.mc_statistics(samples)
    np.testing.assert_allclose(st["bald"], [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(st["entropy"], U.entropy(samples[0]))
    np.testing.assert_allclose(st["variation_ratio"], [0.0, 0.0])


def test_variation_ratio_counts_modal_votes() -> None:
    votes = [0, 0, 1, 2, 0]
    samples = np.eye(3)[votes][:, None, :]  # [T=5, N=1, C=3]
    assert U.mc_statistics(samples)["variation_ratio"][0] == pytest.approx(1 - 3 / 5)


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((2, 2, 2))])
def test_wrong_rank_is_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        U.entropy(bad)
    with pytest.raises(ValueError):
        U.mc_statistics(np.zeros((2, 2)))
