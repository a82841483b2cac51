"""The shared training recipe (numpy only, so importing it never loads TensorFlow)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Recipe:
    """How a model is (re)trained on the labeled set after each round.

    - ``warm_start``: keep the previous round's weights and fine-tune, so a round
      costs a few epochs instead of a full training from scratch;
    - ``epochs`` passes over the labeled set per round, but at least
      ``min_steps`` gradient steps (100 labels are only two batches). 5 / 100 instead of the
      earlier 3 / 60: the model was under-trained, and uncertainty sampling gains the most from
      a settled model (3 seeds: margin 1,467 -> 1,033 labels to 85%, random 2,267 -> 1,733);
    - ``augment``: random shifts of up to ``shift`` pixels and horizontal flips
      (label-preserving for garments and for capsule frames);
    - cosine learning-rate decay from ``learning_rate`` within each round, so
      every round ends at a settled minimum;
    - ``class_balance`` (off by default): inverse-frequency class weights. Measured on
      Fashion-MNIST, they work AGAINST uncertainty sampling: the strategies over-sample the
      confusable classes on purpose and the weights then down-weight exactly those labels
      (margin at 1,000 labels: 0.799 with, 0.832 without; modAL least-confidence: 0.780 vs
      0.790), while random's balanced labels are unaffected (0.803 vs 0.808).
    """

    epochs: int = 5
    min_steps: int = 100
    batch_size: int = 64
    learning_rate: float = 2e-3
    min_lr_fraction: float = 0.05
    warm_start: bool = True
    augment: bool = True
    shift: int = 2
    flip: bool = True
    class_balance: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def augment(x: np.ndarray, rng: np.random.Generator, shift: int, flip: bool) -> np.ndarray:
    """Random translation (zero padding) and horizontal flip, per image, in numpy."""
    n, h, w, _ = x.shape
    out = x.copy()
    if flip:
        flips = rng.random(n) < 0.5
        out[flips] = out[flips, :, ::-1]
    if shift > 0:
        padded = np.pad(out, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
        dy = rng.integers(0, 2 * shift + 1, n)
        dx = rng.integers(0, 2 * shift + 1, n)
        for oy in range(2 * shift + 1):
            for ox in range(2 * shift + 1):
                sel = np.flatnonzero((dy == oy) & (dx == ox))
                if sel.size:
                    out[sel] = padded[sel, oy:oy + h, ox:ox + w]
    return out


def class_weights(y: np.ndarray, num_classes: int) -> dict[int, float]:
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return {c: float(w) for c, w in enumerate(weights)}
