"""Data and model: a binary classification task generated once and split into partitions."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss

NUM_FEATURES = 10


def load_partition(partition_id: int, num_partitions: int, seed: int,
                   samples_per_node: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Partition ``partition_id``'s train and test split of one generated data set."""
    x, y = make_classification(n_samples=samples_per_node * num_partitions,
                               n_features=NUM_FEATURES, n_informative=6, random_state=seed)
    x_part = np.array_split(x, num_partitions)[partition_id]
    y_part = np.array_split(y, num_partitions)[partition_id]
    split = int(0.8 * len(x_part))
    return x_part[:split], y_part[:split], x_part[split:], y_part[split:]


def new_model(penalty: str, local_epochs: int) -> LogisticRegression:
    """A logistic regression that continues from the parameters it is given."""
    return LogisticRegression(penalty=penalty, max_iter=local_epochs, warm_start=True)


def initial_parameters() -> list[np.ndarray]:
    """Zero coefficients and intercept: the global model before the first round."""
    return [np.zeros((1, NUM_FEATURES)), np.zeros(1)]


def set_parameters(model: LogisticRegression, parameters: list[np.ndarray]) -> None:
    model.classes_ = np.array([0, 1])
    model.coef_ = parameters[0]
    model.intercept_ = parameters[1]


def get_parameters(model: LogisticRegression) -> list[np.ndarray]:
    return [model.coef_, model.intercept_]


def fit(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few local iterations do not converge, on purpose
        model.fit(x, y)


def score(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Log loss and accuracy."""
    return (float(log_loss(y, model.predict_proba(x), labels=[0, 1])),
            float(accuracy_score(y, model.predict(x))))
