"""Data and booster parameters: a binary classification task generated once and split into
partitions, and the ``params.*`` keys of the run config as XGBoost's parameters."""

from __future__ import annotations

import numpy as np
import xgboost as xgb
from sklearn.datasets import make_classification

from fedsilo.app import UserConfig
from fedsilo.common.config import unflatten_dict

NUM_FEATURES = 12


def load_partition(partition_id: int, num_partitions: int, seed: int,
                   samples_per_node: int) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    """Partition ``partition_id``'s train and validation DMatrix of one generated data set."""
    x, y = make_classification(n_samples=samples_per_node * num_partitions,
                               n_features=NUM_FEATURES, n_informative=8, random_state=seed)
    x_part = np.array_split(x, num_partitions)[partition_id]
    y_part = np.array_split(y, num_partitions)[partition_id]
    split = int(0.8 * len(x_part))
    return (xgb.DMatrix(x_part[:split], label=y_part[:split]),
            xgb.DMatrix(x_part[split:], label=y_part[split:]))


def booster_params(run_config: UserConfig) -> dict[str, object]:
    """The ``params.*`` entries of the run config, with XGBoost's underscored names."""
    params = unflatten_dict(run_config)["params"]
    return {key.replace("-", "_"): value for key, value in params.items()}
