"""The seed's ``utils.py``: LogisticRegression parameters as numpy arrays, and silo data.

Shared by the seed-style client (run under Flower's venvs), the seed-style server and the
tests (run under fedsilo's), so it needs only numpy, scikit-learn and joblib.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

N_FEATURES = 5
N_CLASSES = 2
# One labelling rule for every silo, so that federating the silos makes sense.
_TRUE_WEIGHTS = np.array([1.5, -2.0, 0.75, 0.0, 1.0])
_TRUE_BIAS = -0.25


def get_model_parameters(model: LogisticRegression) -> list[np.ndarray]:
    """The model's parameters in the order the federation exchanges them."""
    if model.fit_intercept:
        return [model.coef_, model.intercept_]
    return [model.coef_]


def set_model_params(model: LogisticRegression, params: list[np.ndarray]) -> LogisticRegression:
    """Load exchanged parameters into the model."""
    model.coef_ = params[0]
    if model.fit_intercept:
        model.intercept_ = params[1]
    return model


def set_initial_params(model: LogisticRegression) -> None:
    """Zero parameters, because scikit-learn creates them only in ``fit``."""
    model.classes_ = np.arange(N_CLASSES)
    model.coef_ = np.zeros((1, N_FEATURES))
    if model.fit_intercept:
        model.intercept_ = np.zeros((1,))


def load_data(
    seed: int, n_train: int = 100, n_test: int = 50
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A silo's synthetic train and test sets; each seed shifts the features differently."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(scale=0.5, size=N_FEATURES)
    x = rng.normal(size=(n_train + n_test, N_FEATURES)) + shift
    noise = rng.normal(scale=0.5, size=n_train + n_test)
    y = (x @ _TRUE_WEIGHTS + _TRUE_BIAS + noise > 0).astype(np.int64)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def save_model(model_dir: str | Path, model: LogisticRegression) -> Path:
    """Save the model as ``model.joblib`` in ``model_dir``."""
    path = Path(model_dir) / "model.joblib"
    joblib.dump(model, path)
    return path
