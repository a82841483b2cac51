"""The Keras training loop: class weights, early stopping, NaN guard, CEAL selection."""

from __future__ import annotations

import numpy as np
import pytest

from lumenal.ml.model import ModelSpec, build_classifier
from lumenal.training import trainer

SPEC = ModelSpec(class_names=("informative", "non_informative"), input_size=16, filters=(8, 16))


def _data(n: int = 160, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Dark frames = class 0, bright frames = class 1 (30 %): imbalanced but separable."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    x = rng.random((n, 16, 16, 3), dtype=np.float32) * 0.5 + 0.5 * y[:, None, None, None]
    return [f"v:{i:06d}" for i in range(n)], x, y


def test_balanced_class_weights_favour_the_rare_class():
    w = trainer.balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    assert w[0] == pytest.approx(4 / 6) and w[1] == pytest.approx(2.0) and w[2] == 1.0


def test_ceal_selects_only_confident_frames_most_confident_first():
    probs = np.array([[0.5, 0.5], [0.999, 0.001], [0.01, 0.99], [0.9, 0.1]])
    idx, labels = trainer.ceal_select(probs, delta=0.1, max_n=10)
    assert idx.tolist() == [1, 2] and labels.tolist() == [0, 1]
    assert trainer.ceal_select(probs, delta=0.1, max_n=1)[0].tolist() == [1]
    assert trainer.ceal_delta(0.1, 0.5, 0) == 0.1 and trainer.ceal_delta(0.1, 0.5, 2) == pytest.approx(0.025)


def test_training_learns_and_stops_early_and_ceal_adds_pseudo_labels():
    ids, x, y = _data()
    model = build_classifier(SPEC, seed=0)
    _, x_unl, _ = _data(60, seed=1)
    cfg = trainer.TrainConfig(epochs=15, patience=5, batch_size=32, ceal_epochs=2)
    result = trainer.train(model, ids, x, y, 2, cfg, x_unlabeled=x_unl, delta=0.3)
    assert 1 <= result.epochs <= 17 and result.seconds_per_epoch > 0
    assert "val_loss" in result.history  # early stopping watched the held-out training slice
    assert 0 < result.pseudo_labels <= 60
    _, x_test, y_test = _data(100, seed=2)
    assert (trainer.predict_classes(model, x_test) == y_test).mean() > 0.9


def test_nan_loss_fails_the_run_with_the_reason():
    ids, x, y = _data(64)
    with pytest.raises(trainer.TrainingFailed, match="NaN"):
        trainer.train(build_classifier(SPEC, seed=0), ids, x, y, 2,
                      trainer.TrainConfig(epochs=3, learning_rate=1e10))


def test_bad_inputs_fail_clearly():
    ids, x, y = _data(20)
    x[3, 0, 0, 0] = np.nan
    with pytest.raises(trainer.TrainingFailed, match="NaN"):
        trainer.train(build_classifier(SPEC, seed=0), ids, x, y, 2, trainer.TrainConfig(epochs=1))
    with pytest.raises(trainer.TrainingFailed, match="no training samples"):
        trainer.train(build_classifier(SPEC, seed=0), [], x[:0], y[:0], 2, trainer.TrainConfig(epochs=1))


def test_time_budget_stops_after_the_epoch_that_crosses_it():
    ids, x, y = _data(64)
    result = trainer.train(build_classifier(SPEC, seed=0), ids, x, y, 2,
                           trainer.TrainConfig(epochs=10, max_train_s=1e-3))
    assert result.epochs == 1 and result.budget_hit
