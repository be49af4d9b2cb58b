"""What both sides share: the booster's parameters from the run config, a booster from the
bytes a message carries, and the rows of a site's channel or of the server's test set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb

from fedsilo.app import ArrayRecord, UserConfig
from fedsilo.common.config import unflatten_dict
from fedsilo.examples.fraud.prepare import load_site_channel, load_test_set
from fedsilo.serverapp.strategy import booster_bytes

__all__ = ["booster_params", "load_booster", "site_rows", "test_rows"]


def booster_params(run_config: UserConfig) -> dict[str, object]:
    """The ``params.*`` entries of the run config, with XGBoost's underscored names."""
    params = unflatten_dict(run_config)["params"]
    return {key.replace("-", "_"): value for key, value in params.items()}


def load_booster(arrays: ArrayRecord, params: dict[str, object]) -> xgb.Booster | None:
    """The booster the record carries (its JSON bytes as one uint8 array); None when empty."""
    model = booster_bytes(arrays)
    if not model:
        return None
    booster = xgb.Booster(params=params)
    booster.load_model(bytearray(model))
    return booster


def site_rows(channel: str | Path) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    """The site's training rows (SMOTE-balanced) and its untouched validation rows."""
    site = load_site_channel(channel)
    return (xgb.DMatrix(site.X_train, label=site.y_train),
            xgb.DMatrix(site.X_val, label=site.y_val))


def test_rows(directory: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The server's test set (original rows, original class balance)."""
    return load_test_set(directory)
