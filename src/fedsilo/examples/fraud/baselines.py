"""What the federation is measured against: pooling all sites' data, or each site alone.

Both baselines use the federated model's settings and roughly its optimizer effort. In a
federation of ``rounds`` rounds every site runs ``rounds`` warm-started fits of ``max_iter``
solver iterations, each starting from the global model. A baseline model likewise starts from
zeros and runs ``rounds`` warm-started fits of ``max_iter`` iterations on its data: the pooled
model on all sites' training rows together (what centralizing the data would give, were it
allowed), a site model on that site's rows only (what a site gets without federating). Neither
is handicapped: each gets as many iterations on its data as each site gets in the federation,
and the pooled model gets them on all the data at once. All are scored on the server's test set.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from fedsilo.examples.fraud.model import new_model, set_initial_params
from fedsilo.examples.fraud.prepare import FederatedSplit
from fedsilo.examples.fraud.server_side import evaluation_metrics

__all__ = ["BaselineResult", "mean_metrics", "pooled_model", "site_models", "train_like_rounds"]


@dataclass
class BaselineResult:
    """A baseline model and its metrics on the server's test set."""

    name: str
    model: LogisticRegression
    metrics: dict[str, float]


def train_like_rounds(
    X: np.ndarray, y: np.ndarray, *, rounds: int = 5, penalty: str = "l2", max_iter: int = 10
) -> LogisticRegression:
    """A model trained from zeros by ``rounds`` warm-started fits of ``max_iter`` iterations."""
    model = set_initial_params(new_model(penalty, max_iter), n_features=X.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: few iterations by design
        for _ in range(rounds):
            model.fit(X, y)
    return model


def pooled_model(
    split: FederatedSplit, *, rounds: int = 5, penalty: str = "l2", max_iter: int = 10
) -> BaselineResult:
    """One model on all sites' training rows together, scored on the server's test set."""
    X = np.concatenate([site.X_train for site in split.sites])
    y = np.concatenate([site.y_train for site in split.sites])
    model = train_like_rounds(X, y, rounds=rounds, penalty=penalty, max_iter=max_iter)
    return BaselineResult("pooled", model, evaluation_metrics(model, split.X_test, split.y_test))


def site_models(
    split: FederatedSplit, *, rounds: int = 5, penalty: str = "l2", max_iter: int = 10
) -> list[BaselineResult]:
    """Each site's model trained on its own rows alone, scored on the server's test set."""
    results = []
    for site in split.sites:
        model = train_like_rounds(site.X_train, site.y_train, rounds=rounds, penalty=penalty,
                                  max_iter=max_iter)
        metrics = evaluation_metrics(model, split.X_test, split.y_test)
        results.append(BaselineResult(site.name, model, metrics))
    return results


def mean_metrics(results: list[BaselineResult]) -> dict[str, float]:
    """The unweighted mean of each metric over ``results``: the typical lone site."""
    if not results:
        return {}
    names = results[0].metrics
    return {name: math.fsum(r.metrics[name] for r in results) / len(results) for name in names}
