"""Utilities of the site's training program: the model's parameters, the data, saving.

The seed's utils.py, for the fraud example: the logistic regression's parameters as the
arrays a federation exchanges (zeros before the first fit, since scikit-learn creates them only
in ``fit``), the site's channel as training and validation rows, and ``model.joblib``.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.linear_model import LogisticRegression

from fedsilo.examples.fraud.model import (
    get_model_parameters,
    new_model,
    save_model,
    set_initial_params,
    set_model_params,
)
from fedsilo.examples.fraud.prepare import SiteData, load_site_channel

__all__ = [
    "get_model_parameters",
    "load_data",
    "new_model",
    "save_model",
    "set_initial_params",
    "set_model_params",
    "write_failure",
]


def load_data(channel: str | Path) -> SiteData:
    """The site's training (SMOTE-balanced) and validation rows from its ``train`` channel."""
    return load_site_channel(channel)


def initial_model(penalty: str, max_iter: int, n_features: int) -> LogisticRegression:
    """A warm-starting model with zero parameters, ready to answer get_parameters."""
    return set_initial_params(new_model(penalty, max_iter), n_features)


def write_failure(output_dir: str | Path | None, message: str) -> None:
    """Leave the reason of a failure where the site reads it (``$SM_OUTPUT_DIR/failure``)."""
    if output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "failure").write_text(message[:1000])
