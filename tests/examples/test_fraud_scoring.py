"""The report's figures for one model: worked out by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo.examples.fraud.demo import findings
from fedsilo.examples.fraud.scoring import THRESHOLD, baseline_scores, score


def test_threshold_figures_and_confusion_follow_their_formulas() -> None:
    y = np.array([1, 1, 0, 0, 0, 1])
    p = np.array([0.9, 0.4, 0.6, 0.2, 0.5, 0.7])  # 0.5 exactly is not flagged
    got = score(y, p, intervals=False)
    assert got["confusion"] == {"tp": 2, "fn": 1, "fp": 1, "tn": 2}
    assert got["accuracy"] == pytest.approx(4 / 6)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    assert got["threshold"] == THRESHOLD
    # Ranked by p: 0.9(1) 0.7(1) 0.6(0) 0.5(0) 0.4(1) 0.2(0); precision at each fraud found:
    # 1/1, 2/2, 3/5, so average precision is (1 + 1 + 0.6) / 3.
    assert got["average_precision"] == pytest.approx((1 + 1 + 0.6) / 3)
    # Pairs (fraud, legitimate) ranked right: 0.9 beats 3, 0.7 beats 3, 0.4 beats 1 -> 7 of 9.
    assert got["roc_auc"] == pytest.approx(7 / 9)
    assert got["roc_auc_ci"] is None and got["average_precision_ci"] is None


def test_the_always_legitimate_baseline_scores_the_class_shares() -> None:
    y = np.array([0] * 90 + [1] * 10)
    got = score(y, baseline_scores(len(y), 0.1), seed=3)
    assert got["accuracy"] == pytest.approx(0.9)
    assert got["confusion"] == {"tp": 0, "fp": 0, "fn": 10, "tn": 90}
    assert got["roc_auc"] == 0.5
    assert got["average_precision"] == pytest.approx(0.1)
    assert got["roc_auc_ci"] == [0.5, 0.5]
    low, high = got["average_precision_ci"]
    assert low < 0.1 < high  # the resampled fraud share varies around 0.1


def test_intervals_are_seeded_and_widen_with_fewer_rows() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.1
    p = np.clip(0.3 * y + rng.random(2000) * 0.7, 0, 1)
    full = score(y, p, seed=1)
    assert score(y, p, seed=1)["roc_auc_ci"] == full["roc_auc_ci"]
    small = score(y[:200], p[:200], seed=1)
    width = [hi - lo for lo, hi in (full["roc_auc_ci"], small["roc_auc_ci"])]
    assert width[1] > 2 * width[0]


def _figures(value: float, interval: list[float], accuracy: float = 0.8) -> dict[str, object]:
    return {"roc_auc": value, "roc_auc_ci": interval, "average_precision": value,
            "average_precision_ci": interval, "accuracy": accuracy}


def test_findings_say_what_the_intervals_and_baseline_show() -> None:
    report = {
        "federated": _figures(0.88, [0.84, 0.91]),
        "pooled": _figures(0.89, [0.85, 0.92]),
        "always_legitimate": _figures(0.5, [0.5, 0.5], accuracy=0.898),
        "sites": {"a": _figures(0.80, []), "b": _figures(0.90, [])},
    }
    shown = findings(report)
    assert "ROC-AUC: federated 0.880, pooled 0.890; the intervals overlap" in shown[0]
    assert "above 1 of the 2 sites' own models" in shown[2]
    assert "(0.800) is not above flagging nobody (0.898)" in shown[3]
    report["pooled"] = _figures(0.95, [0.93, 0.97])
    assert "do not overlap: the pooled model ranks better" in findings(report)[1]
