"""The Keras training loop: class weights, early stopping, NaN guard, CEAL pseudo-labels.

Takes any Keras classifier whose output is softmax probabilities, so it is
independent of how the model was built (warm start or scratch).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field

import keras
import numpy as np

log = logging.getLogger(__name__)


class TrainingFailed(Exception):
    """Training could not produce a usable model (NaN loss, bad data)."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    patience: int = 4
    batch_size: int = 32
    learning_rate: float = 3e-3
    class_weights: bool = True
    seed: int = 0
    ceal_epochs: int = 3
    ceal_max_ratio: float = 1.0
    # Share of training frames (stable hash) watched by early stopping.
    early_stop_fraction: float = 0.1
    # Keras' default 0.99 needs hundreds of steps before inference-mode BatchNorm
    # statistics are usable; small active-learning sets have a few steps per epoch.
    bn_momentum: float = 0.9
    # Few labels make few optimizer steps: shrink batches to get at least this many per epoch.
    min_steps_per_epoch: int = 8
    # Early stopping ignores the first epochs, whose validation loss is noise.
    warmup_epochs: int = 5
    # Wall-clock budget for fitting (0 = none) that bounds label-to-serving latency on
    # small CPUs; at least one full epoch always runs.
    max_train_s: float = 0.0


@dataclass
class TrainResult:
    model: keras.Model
    epochs: int
    seconds_per_epoch: float
    history: dict[str, list[float]] = field(default_factory=dict)
    pseudo_labels: int = 0
    budget_hit: bool = False


def balanced_class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """``n / (k * n_c)`` for present classes: rare classes weigh more (non-informative frames dominate)."""
    counts = np.bincount(np.asarray(y, dtype=int), minlength=n_classes)
    present = int(np.count_nonzero(counts))
    return {c: (float(len(y)) / (present * counts[c]) if counts[c] else 1.0) for c in range(n_classes)}


def entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1.0)
    return -np.sum(p * np.log(p), axis=1)


def ceal_select(probs: np.ndarray, delta: float, max_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose predictive entropy is below ``delta`` (most confident first, at most ``max_n``)
    and their predicted classes."""
    ent = entropy(probs)
    idx = np.flatnonzero(ent < delta)
    idx = idx[np.argsort(ent[idx], kind="stable")][:max(0, max_n)]
    return idx, np.argmax(probs[idx], axis=1)


def ceal_delta(delta0: float, decay: float, round_: int) -> float:
    """The entropy threshold for CEAL round ``round_`` (decays so fewer pseudo-labels over time)."""
    return delta0 * decay ** max(0, round_)


def _early_stop_mask(ids: list[str], fraction: float) -> np.ndarray:
    h = [int.from_bytes(hashlib.sha256(b"es:" + i.encode()).digest()[:4], "big") % 1000 for i in ids]
    return np.asarray(h) < round(fraction * 1000)


class _EpochTimer(keras.callbacks.Callback):
    """Epoch durations, and the time budget: past ``deadline`` fitting stops (mid-epoch once
    one full epoch is done), so a run's fitting time is the budget plus at most one batch."""

    def __init__(self, deadline: float | None = None) -> None:
        super().__init__()
        self.times: list[float] = []
        self.deadline = deadline
        self.budget_hit = False
        self._t = 0.0

    def on_epoch_begin(self, epoch, logs=None):  # noqa: ANN001
        self._t = time.perf_counter()

    def _check(self) -> None:
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            self.budget_hit = True
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):  # noqa: ANN001
        if self.times:  # at least one full pass over the data first
            self._check()

    def on_epoch_end(self, epoch, logs=None):  # noqa: ANN001
        self.times.append(time.perf_counter() - self._t)
        self._check()


def _fit(model: keras.Model, x: np.ndarray, y: np.ndarray, weights: dict[int, float] | None,
         es: tuple[np.ndarray, np.ndarray] | None, epochs: int, cfg: TrainConfig,
         timer: _EpochTimer) -> dict[str, list[float]]:
    monitor = "val_loss" if es is not None else "loss"
    callbacks = [keras.callbacks.TerminateOnNaN(), timer,
                 keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.patience, restore_best_weights=True,
                                               start_from_epoch=min(cfg.warmup_epochs, epochs // 2))]
    batch = int(np.clip(len(x) // max(1, cfg.min_steps_per_epoch), 8, max(8, cfg.batch_size)))
    hist = model.fit(x, y, batch_size=batch, epochs=epochs, validation_data=es,
                     class_weight=weights, callbacks=callbacks, shuffle=True, verbose=0)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    bad = [i for i, v in enumerate(history.get("loss", [])) if not math.isfinite(v)]
    if bad:
        raise TrainingFailed(f"loss became NaN/inf at epoch {bad[0] + 1}")
    if not all(np.all(np.isfinite(w)) for w in model.get_weights()):
        raise TrainingFailed("model weights are not finite after training")
    return history


def recalibrate_batchnorm(model: keras.Model, x: np.ndarray, max_samples: int = 512, seed: int = 0) -> None:
    """Set BatchNorm moving statistics to the training data's exact statistics ("precise BN").

    Moving averages lag far behind after the few optimizer steps a small
    labelled set gives, and inference uses them; one training-mode pass with
    momentum 0 replaces them by the statistics of (a sample of) the data.
    All BatchNorm layers sit in the trunk, before any dropout.
    """
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns or len(x) == 0:
        return
    idx = np.random.default_rng(seed).permutation(len(x))[:max_samples]
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    try:
        model(x[np.sort(idx)], training=True)
    finally:
        for layer, momentum in zip(bns, saved, strict=True):
            layer.momentum = momentum


def train(model: keras.Model, ids: list[str], x: np.ndarray, y: np.ndarray, n_classes: int,
          cfg: TrainConfig, x_unlabeled: np.ndarray | None = None,
          delta: float | None = None) -> TrainResult:
    """Fit ``model`` on the labelled training frames, then (CEAL) on confident pseudo-labels too.

    Early stopping watches a stable slice of the training frames, never the
    validation set, so the promotion gate judges the candidate on unseen frames.
    """
    if len(x) == 0:
        raise TrainingFailed("no training samples")
    if not np.all(np.isfinite(x)):
        raise TrainingFailed("training images contain NaN/inf values")
    keras.utils.set_random_seed(cfg.seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = cfg.bn_momentum
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    weights = balanced_class_weights(y, n_classes) if cfg.class_weights else None
    mask = _early_stop_mask(ids, cfg.early_stop_fraction)
    es = None
    if mask.sum() >= 10 and (~mask).sum() >= 10:
        es = (x[mask], y[mask])
        x_fit, y_fit = x[~mask], y[~mask]
    else:
        x_fit, y_fit = x, y
    timer = _EpochTimer(time.perf_counter() + cfg.max_train_s if cfg.max_train_s > 0 else None)
    history = _fit(model, x_fit, y_fit, weights, es, cfg.epochs, cfg, timer)
    recalibrate_batchnorm(model, x_fit, seed=cfg.seed)
    result = TrainResult(model, len(timer.times), 0.0, history)
    if x_unlabeled is not None and delta is not None and len(x_unlabeled):
        probs = model.predict(x_unlabeled, batch_size=256, verbose=0)
        idx, pseudo = ceal_select(probs, delta, int(cfg.ceal_max_ratio * len(x_fit)))
        result.pseudo_labels = int(len(idx))
        log.info("ceal pseudo-labels", extra={"selected": len(idx), "delta": delta,
                                              "candidates": len(x_unlabeled)})
        if len(idx):
            x_all = np.concatenate([x_fit, x_unlabeled[idx]])
            y_all = np.concatenate([y_fit, pseudo])
            more = _fit(model, x_all, y_all, weights, es, cfg.ceal_epochs, cfg, timer)
            recalibrate_batchnorm(model, x_all, seed=cfg.seed)
            for k, vals in more.items():
                result.history.setdefault(k, []).extend(vals)
            result.epochs = len(timer.times)
    result.seconds_per_epoch = float(np.mean(timer.times)) if timer.times else 0.0
    result.budget_hit = timer.budget_hit
    return result


def predict_classes(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1)
