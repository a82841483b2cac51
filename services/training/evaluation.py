"""Validation metrics and the promotion gate (numpy only, so it is cheap to test)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support.

    Macro-F1 averages over the classes present in ``y_true`` or ``y_pred``
    (as scikit-learn does), so a class nobody labelled yet does not count as 0.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.size == 0:
        raise ValueError("no validation samples")
    out: dict[str, float] = {"accuracy": float(np.mean(y_true == y_pred)), "val_samples": float(y_true.size)}
    f1s = []
    for c, name in enumerate(class_names):
        tp = float(np.sum((y_pred == c) & (y_true == c)))
        pred_c = float(np.sum(y_pred == c))
        true_c = float(np.sum(y_true == c))
        precision = tp / pred_c if pred_c else 0.0
        recall = tp / true_c if true_c else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.update({f"precision/{name}": precision, f"recall/{name}": recall, f"f1/{name}": f1,
                    f"support/{name}": true_c})
        if true_c or pred_c:
            f1s.append(f1)
    out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0
    return out


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate(candidate: dict[str, float], serving: dict[str, float] | None, tolerance: float) -> GateDecision:
    """Promote unless the candidate's macro-F1 is worse than serving's by more than ``tolerance``."""
    cand = candidate.get("macro_f1", float("nan"))
    if not math.isfinite(cand):
        return GateDecision(False, "candidate macro-F1 is not finite")
    if serving is None:
        return GateDecision(True, "no serving model to compare with")
    serv = serving["macro_f1"]
    if cand + tolerance < serv:
        return GateDecision(False, f"macro-F1 {cand:.4f} is worse than serving {serv:.4f} "
                                   f"by more than the tolerance {tolerance:g}")
    return GateDecision(True, f"macro-F1 {cand:.4f} vs serving {serv:.4f} (tolerance {tolerance:g})")
