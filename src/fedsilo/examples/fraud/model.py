"""A scikit-learn logistic regression seen as the arrays a federation exchanges.

The federation sends models as lists of numpy arrays: ``[coef, intercept]``, or ``[coef]``
without an intercept. scikit-learn creates these attributes only in ``fit``, so a model that
must take part before any training (the server's global model, a client asked for its
parameters first) gets zeros from :func:`set_initial_params`. Models warm-start, so every
``fit`` continues from the parameters the server sent instead of starting again.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

from fedsilo.common import NDArrays

__all__ = [
    "PENALTIES",
    "get_model_parameters",
    "load_model",
    "fit_proximal",
    "new_model",
    "save_model",
    "set_initial_params",
    "set_model_params",
]

PENALTIES = ("l2", "l1", "elasticnet", "none")

# scikit-learn 1.8 replaced ``penalty`` by ``l1_ratio`` and ``C=inf``.
_PENALTY_IS_DEPRECATED = tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8)


def new_model(penalty: str = "l2", max_iter: int = 10, *, C: float = 1.0) -> LogisticRegression:
    """A warm-starting logistic regression with ``max_iter`` solver iterations per ``fit``.

    ``penalty`` is one of :data:`PENALTIES`; L2 and no penalty use L-BFGS, L1 and elastic
    net (an even mix) use SAGA.
    """
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {', '.join(PENALTIES)}, got {penalty!r}")
    solver = "lbfgs" if penalty in ("l2", "none") else "saga"
    if _PENALTY_IS_DEPRECATED:
        l1_ratio = {"l2": 0.0, "none": 0.0, "l1": 1.0, "elasticnet": 0.5}[penalty]
        return LogisticRegression(C=np.inf if penalty == "none" else C, l1_ratio=l1_ratio,
                                  solver=solver, max_iter=max_iter, warm_start=True)
    return LogisticRegression(  # type: ignore[call-overload,unused-ignore]
        penalty=None if penalty == "none" else penalty, C=C, solver=solver, max_iter=max_iter,
        warm_start=True, l1_ratio=0.5 if penalty == "elasticnet" else None)


def get_model_parameters(model: LogisticRegression) -> NDArrays:
    """``[coef, intercept]``, or ``[coef]`` when the model fits no intercept."""
    if model.fit_intercept:
        return [np.array(model.coef_), np.array(model.intercept_)]
    return [np.array(model.coef_)]


def set_model_params(model: LogisticRegression, params: NDArrays) -> LogisticRegression:
    """Load parameters from :func:`get_model_parameters` (or the server) into ``model``."""
    expected = 2 if model.fit_intercept else 1
    if len(params) != expected:
        raise ValueError(f"expected {expected} arrays (coef{', intercept' * (expected == 2)}), "
                         f"got {len(params)}")
    model.coef_ = np.array(params[0], dtype=float)
    if model.fit_intercept:
        model.intercept_ = np.array(params[1], dtype=float)
    if not hasattr(model, "classes_"):
        model.classes_ = np.arange(max(2, model.coef_.shape[0]))
    return model


def fit_proximal(
    model: LogisticRegression,
    X: np.ndarray,
    y: np.ndarray,
    global_params: NDArrays,
    *,
    proximal_mu: float,
    max_iter: int | None = None,
) -> LogisticRegression:
    """Train a binary ``model`` from ``global_params`` on FedProx's local objective.

    Minimises ``mean log loss + ||w||^2 / (2 C n) + mu/2 ||theta - theta_global||^2`` (the
    first two terms are scikit-learn's L2 objective divided by ``n``; ``theta`` is the
    coefficients and the intercept) by full-batch gradient descent, ``max_iter`` steps of
    size ``1 / L`` with ``L`` a bound on the gradient's Lipschitz constant. The proximal
    term keeps a site's model near the global one when sites' data differ (Li et al.,
    2020). scikit-learn's solvers have no such term, hence this loop.
    """
    if proximal_mu < 0:
        raise ValueError(f"proximal_mu must be non-negative, got {proximal_mu}")
    if np.shape(global_params[0])[0] != 1:
        raise ValueError("fit_proximal trains binary models (one row of coefficients)")
    l2 = _l2_strength(model, len(X))
    set_model_params(model, global_params)
    anchor_w = np.array(model.coef_[0], dtype=float)
    anchor_b = float(model.intercept_[0]) if model.fit_intercept else 0.0
    w, b = anchor_w.copy(), anchor_b
    X = np.asarray(X, dtype=float)
    target = (np.asarray(y) == model.classes_[1]).astype(float)
    n = len(X)
    # Log loss curvature <= ||x||^2 / 4 per row; the bias adds a column of ones.
    lipschitz = 0.25 * (float(np.sum(X * X)) / n + model.fit_intercept) + l2 + proximal_mu
    step = 1.0 / lipschitz
    for _ in range(model.max_iter if max_iter is None else max_iter):
        residual = _sigmoid(X @ w + b) - target
        grad_w = X.T @ residual / n + l2 * w + proximal_mu * (w - anchor_w)
        w = w - step * grad_w
        if model.fit_intercept:
            b = b - step * (float(np.mean(residual)) + proximal_mu * (b - anchor_b))
    model.coef_ = w.reshape(1, -1)
    if model.fit_intercept:
        model.intercept_ = np.array([b])
    return model


def _l2_strength(model: LogisticRegression, n_rows: int) -> float:
    penalty = getattr(model, "penalty", "l2")
    l1_ratio = getattr(model, "l1_ratio", None) or 0.0
    if penalty in ("l1", "elasticnet") or l1_ratio > 0:
        raise ValueError("FedProx training supports the l2 and none penalties; "
                         "choose --penalty l2 or none")
    if penalty is None or penalty == "none" or not np.isfinite(model.C):
        return 0.0
    return 1.0 / (float(model.C) * n_rows)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def set_initial_params(
    model: LogisticRegression, n_features: int, n_classes: int = 2
) -> LogisticRegression:
    """Zero parameters of the shapes ``fit`` would create; binary models have one row."""
    rows = 1 if n_classes == 2 else n_classes
    model.classes_ = np.arange(n_classes)
    model.coef_ = np.zeros((rows, n_features))
    if model.fit_intercept:
        model.intercept_ = np.zeros((rows,))
    return model


def save_model(path: str | Path, model: LogisticRegression) -> Path:
    """Save ``model`` with joblib; a directory ``path`` gets ``model.joblib`` inside it."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        path = path / "model.joblib"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    return path


def load_model(path: str | Path) -> LogisticRegression:
    """Load a model saved by :func:`save_model` (a file, or a directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.joblib"
    model = joblib.load(path)
    if not isinstance(model, LogisticRegression):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a LogisticRegression")
    return model
