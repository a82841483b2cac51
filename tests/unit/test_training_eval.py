"""Stable split, validation metrics and the promotion gate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lumenal.training.evaluation import classification_metrics, gate
from lumenal.training.split import is_validation, split


def test_split_is_stable_and_the_validation_set_only_grows():
    first = [f"vid:{i:06d}" for i in range(500)]
    more = first + [f"vid:{i:06d}" for i in range(500, 2000)]
    train1, val1 = split(first, 0.2)
    train2, val2 = split(list(reversed(more)), 0.2)
    assert set(val1) <= set(val2) and set(train1) <= set(train2)
    assert not set(val2) & set(train2)
    assert 0.16 < len(val2) / len(more) < 0.24
    assert all(is_validation(f, 0.2) for f in val1)
    assert split(first, 0.0)[1] == [] and split(first, 1.0)[0] == []


def test_metrics_accuracy_macro_f1_and_per_class():
    names = ("informative", "non_informative", "blood")
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    m = classification_metrics(y_true, y_pred, names)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision/informative"] == pytest.approx(2 / 3)
    assert m["recall/informative"] == pytest.approx(2 / 3)
    assert m["f1/non_informative"] == pytest.approx(0.8)
    assert m["f1/blood"] == 0.0 and m["support/blood"] == 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)


def test_macro_f1_ignores_classes_absent_from_truth_and_predictions():
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), ("a", "b", "never_seen"))
    assert m["macro_f1"] == 1.0
    with pytest.raises(ValueError):
        classification_metrics(np.array([]), np.array([]), ("a", "b"))


def test_gate_promotes_within_tolerance_and_rejects_worse():
    assert gate({"macro_f1": 0.5}, None, 0.01).promote
    assert gate({"macro_f1": 0.795}, {"macro_f1": 0.80}, 0.01).promote
    worse = gate({"macro_f1": 0.70}, {"macro_f1": 0.80}, 0.01)
    assert not worse.promote and "worse" in worse.reason
    assert not gate({"macro_f1": math.nan}, None, 0.01).promote
    assert not gate({"macro_f1": math.nan}, {"macro_f1": 0.1}, 1.0).promote
