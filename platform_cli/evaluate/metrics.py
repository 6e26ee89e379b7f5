"""Evaluation metrics of a click model on labelled rows: pure functions of arrays.

AUC and log loss say how well the model ranks and how sharp it is; calibration says whether a
predicted 10% means 10% clicks (what bidding and ranking by expected value rely on); segments
show where a version is better or worse (a new version can win overall and lose on iOS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

CALIBRATION_BINS = 10
MIN_SEGMENT_ROWS = 50  # fewer rows than this give noise, not a metric


def score(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """AUC, log loss, calibration (ratio, expected calibration error, curve) and the ROC curve."""
    import numpy as np
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import log_loss, roc_auc_score, roc_curve

    labels = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    two_classes = 0 < labels.sum() < len(labels)
    result = {
        "rows": int(len(labels)),
        "ctr": float(labels.mean()) if len(labels) else 0.0,
        "mean_prediction": float(p.mean()) if len(p) else 0.0,
        "auc": float(roc_auc_score(labels, p)) if two_classes else None,
        "logloss": float(log_loss(labels, p, labels=[0.0, 1.0])) if len(labels) else None,
    }
    result["calibration_ratio"] = result["mean_prediction"] / result["ctr"] if result["ctr"] else None
    if two_classes:
        fraction, predicted = calibration_curve(labels, p, n_bins=CALIBRATION_BINS, strategy="quantile")
        # Equal-count bins, so the expected calibration error is the plain mean gap.
        result["ece"] = float(np.mean(np.abs(fraction - predicted)))
        result["calibration_curve"] = {"predicted": predicted.round(5).tolist(), "observed": fraction.round(5).tolist()}
        fpr, tpr, _ = roc_curve(labels, p)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))  # enough points to draw
        result["roc_curve"] = {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}
    return result


def segment_scores(labels: np.ndarray, probabilities: np.ndarray, values: np.ndarray) -> dict[str, dict]:
    """Per value of a segment field (missing values as "(missing)"), biggest segments first;
    values with fewer than MIN_SEGMENT_ROWS rows are left out."""
    import numpy as np
    import pandas as pd

    keys = pd.Series(values, dtype=object).where(pd.notna(values), "(missing)").astype(str).to_numpy()
    result = {}
    names, counts = np.unique(keys, return_counts=True)
    for name, count in sorted(zip(names, counts), key=lambda nc: (-nc[1], nc[0])):
        if count < MIN_SEGMENT_ROWS:
            continue
        mask = keys == name
        scored = score(labels[mask], probabilities[mask])
        result[str(name)] = {k: scored[k] for k in ("rows", "ctr", "mean_prediction", "auc", "logloss", "calibration_ratio")}
    return result
