"""How the demo's models are scored on the server's test set, with intervals and a baseline.

A fraud analyst reads these figures, so each says what it measures:

- ROC-AUC and average precision (the area under the precision-recall curve, PR-AUC) rank the
  providers by the model's fraud probability and need no threshold. With about one provider
  in ten fraudulent, PR-AUC is the harder one: a model that ranks at random scores the fraud
  share, not 0.5.
- accuracy, precision, recall, F1 and the confusion matrix flag a provider when its fraud
  probability is above :data:`THRESHOLD` (as scikit-learn's ``predict`` does). The sites
  train on SMOTE-balanced rows (about half of them fraud), so the models' probabilities
  overstate fraud and this threshold flags more providers than the fraud share would
  suggest; the figures hold for this threshold only.
- each model's ROC-AUC and PR-AUC come with a percentile bootstrap interval over the test
  providers (:data:`BOOTSTRAP_RESAMPLES` resamples, seeded): with about a hundred frauds in
  the test set, differences inside these intervals are not evidence of a better model.
- the "always legitimate" baseline flags nobody and gives every provider the training data's
  fraud share as its probability: its accuracy is the share of legitimate providers, which is
  what any model's accuracy must be read against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import bootstrap
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONFIDENCE",
    "THRESHOLD",
    "baseline_scores",
    "fraud_probability",
    "score",
]

THRESHOLD = 0.5
BOOTSTRAP_RESAMPLES = 400
CONFIDENCE = 0.95


def fraud_probability(model: LogisticRegression, X: np.ndarray) -> np.ndarray:
    """The model's probability that each row is fraud (class 1)."""
    return model.predict_proba(X)[:, list(model.classes_).index(1)]


def baseline_scores(n_rows: int, fraud_share: float) -> np.ndarray:
    """The "always legitimate" baseline's probabilities: the fraud share for everyone."""
    return np.full(n_rows, float(fraud_share))


def score(y: np.ndarray, probability: np.ndarray, *, seed: int = 0,
          intervals: bool = True) -> dict[str, Any]:
    """Every figure of the report for one model's fraud ``probability`` on labels ``y``.

    Threshold figures use ``probability > THRESHOLD``; ``roc_auc_ci`` and
    ``average_precision_ci`` are ``[low, high]`` percentile bootstrap intervals at
    :data:`CONFIDENCE`, resampling the rows with ``seed`` (``None`` without ``intervals``).
    """
    y = np.asarray(y, dtype=np.int64)
    probability = np.asarray(probability, dtype=float)
    flagged = (probability > THRESHOLD).astype(np.int64)  # as scikit-learn's predict
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, flagged, labels=[0, 1]).ravel())
    both = len(np.unique(y)) == 2
    intervals = intervals and both
    return {
        "loss": float(log_loss(y, probability, labels=[0, 1])),
        "accuracy": float(accuracy_score(y, flagged)),
        "precision": float(precision_score(y, flagged, zero_division=0)),
        "recall": float(recall_score(y, flagged, zero_division=0)),
        "f1": float(f1_score(y, flagged, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, probability)) if both else math.nan,
        "average_precision": float(average_precision_score(y, probability)) if both
        else math.nan,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "threshold": THRESHOLD,
        "roc_auc_ci": _interval(roc_auc_score, y, probability, seed) if intervals else None,
        "average_precision_ci": _interval(average_precision_score, y, probability, seed)
        if intervals else None,
    }


def _interval(metric: Any, y: np.ndarray, probability: np.ndarray,
              seed: int) -> list[float]:
    def statistic(labels: np.ndarray, scores: np.ndarray) -> float:
        if labels.min() == labels.max():  # a resample with one class: no ranking to score
            return math.nan
        return float(metric(labels, scores))

    result = bootstrap((y, probability), statistic, paired=True, vectorized=False,
                       n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                       method="percentile", random_state=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]
