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
