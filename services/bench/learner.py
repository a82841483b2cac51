"""The one training recipe every strategy in the bench shares, behind an sklearn face.

Fairness rule: random, every Lumenal strategy and modAL all train the SAME
``lumenal.ml.model.build_classifier`` network with the SAME ``Recipe``; only the
choice of which frames get labeled differs. ``KerasLearner`` is the small
sklearn-compatible wrapper modAL's ``ActiveLearner`` needs (``fit``,
``predict_proba``, ``predict``, ``score``), and the bench's own loop drives the
very same class.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from lumenal.bench.recipe import Recipe, augment, class_weights


class KerasLearner(ClassifierMixin, BaseEstimator):
    """``lumenal.ml.model.build_classifier`` trained with ``Recipe``; sklearn API for modAL."""

    def __init__(self, spec: object = None, recipe: Recipe | None = None, seed: int = 0) -> None:
        self.spec = spec
        self.recipe = recipe
        self.seed = seed

    # -- sklearn API -------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> KerasLearner:
        """One round: fine-tune the kept model (warm start) or train a fresh one."""
        from lumenal.ml import model as ml

        recipe = self.recipe or Recipe()
        self.rounds_ = getattr(self, "rounds_", 0) + 1
        if getattr(self, "model_", None) is None or not recipe.warm_start:
            self.model_ = ml.compile_classifier(ml.build_classifier(self.spec, seed=self.seed),
                                                recipe.learning_rate)
        self.classes_ = np.arange(self.spec.num_classes)
        rng = np.random.default_rng([self.seed, self.rounds_, 17])
        x_train, y_train = self._epoch_data(np.asarray(X, np.float32), np.asarray(y, np.int64), recipe, rng)
        weights = class_weights(y_train, self.spec.num_classes) if recipe.class_balance else None
        steps = math.ceil(len(y_train) / recipe.batch_size)
        self.model_.fit(x_train, y_train, batch_size=recipe.batch_size, epochs=1, shuffle=False,
                        verbose=0, class_weight=weights, callbacks=[_CosineLR(recipe, steps)])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        from lumenal.ml import model as ml

        return ml.predict_probabilities(self.model_, self.spec, np.asarray(X, np.float32), batch_size=1024)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    # -- what Lumenal strategies need ------------------------------------------
    def score_all(self, X: np.ndarray, mc_samples: int) -> dict[str, np.ndarray]:
        """The inference service's computation (``mc_dropout`` signature), in-process."""
        from lumenal.ml import model as ml

        return ml.predict_all(self.model_, self.spec, np.asarray(X, np.float32), mc_samples=mc_samples,
                              batch_size=1024)

    def embed(self, X: np.ndarray) -> np.ndarray:
        from lumenal.ml import model as ml

        return ml.predict_embedding(self.model_, self.spec, np.asarray(X, np.float32), batch_size=1024)

    @staticmethod
    def _epoch_data(x: np.ndarray, y: np.ndarray, recipe: Recipe,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """All of this round's (augmented, shuffled) epochs as one array: one ``fit`` call."""
        epochs = max(recipe.epochs, math.ceil(recipe.min_steps * recipe.batch_size / max(len(y), 1)))
        order = np.concatenate([rng.permutation(len(y)) for _ in range(epochs)])
        xs = x[order]
        if recipe.augment:
            xs = augment(xs, rng, recipe.shift, recipe.flip)
        return xs, y[order]


class _CosineLR(keras.callbacks.Callback):
    """Cosine decay over this round's steps, restarted every round (warm restarts)."""

    def __init__(self, recipe: Recipe, steps: int) -> None:
        super().__init__()
        self.recipe = recipe
        self.steps = max(steps, 1)

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        r = self.recipe
        floor = r.learning_rate * r.min_lr_fraction
        lr = floor + 0.5 * (r.learning_rate - floor) * (1 + math.cos(math.pi * batch / self.steps))
        self.model.optimizer.learning_rate.assign(lr)
