"""What the federation is measured against: pooling all sites' data, or each site alone.

The fair comparison trains each alternative to convergence (``converged=True``): the same
model family, penalty and inputs as the federated model, fitted until the solver stops on its
own, so the alternative is as good as its data allows. It is what the demo reports as
"pooled" and as each site "alone".

With ``converged=False`` a baseline instead gets the federated model's optimizer effort. In a
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
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from fedsilo.examples.fraud.model import new_model, set_initial_params
from fedsilo.examples.fraud.prepare import FederatedSplit
from fedsilo.examples.fraud.server_side import evaluation_metrics

__all__ = [
    "CONVERGED_MAX_ITER",
    "BaselineResult",
    "ConvergenceError",
    "converged_model",
    "mean_metrics",
    "pooled_model",
    "site_models",
    "train_like_rounds",
]

# Far more than L-BFGS needs on these inputs (it stops after a few dozen iterations).
CONVERGED_MAX_ITER = 5000


class ConvergenceError(RuntimeError):
    """A model meant to be trained to convergence stopped at its iteration limit."""


@dataclass
class BaselineResult:
    """A baseline model and its metrics on the server's test set."""

    name: str
    model: LogisticRegression
    metrics: dict[str, Any]


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


def converged_model(X: np.ndarray, y: np.ndarray, *, penalty: str = "l2") -> LogisticRegression:
    """A model of the federation's family fitted on ``(X, y)`` until its solver converges."""
    model = new_model(penalty, CONVERGED_MAX_ITER)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            model.fit(X, y)
        except ConvergenceWarning as exc:
            raise ConvergenceError(f"the {penalty} model did not converge in "
                                   f"{CONVERGED_MAX_ITER} iterations") from exc
    return model


def pooled_model(
    split: FederatedSplit, *, rounds: int = 5, penalty: str = "l2", max_iter: int = 10,
    converged: bool = False,
) -> BaselineResult:
    """One model on all sites' training rows together, scored on the server's test set.

    ``converged`` fits it to convergence; otherwise it gets the federation's effort
    (:func:`train_like_rounds`).
    """
    X = np.concatenate([site.X_train for site in split.sites])
    y = np.concatenate([site.y_train for site in split.sites])
    model = _train(X, y, rounds=rounds, penalty=penalty, max_iter=max_iter, converged=converged)
    return BaselineResult("pooled", model, evaluation_metrics(model, split.X_test, split.y_test))


def site_models(
    split: FederatedSplit, *, rounds: int = 5, penalty: str = "l2", max_iter: int = 10,
    converged: bool = False,
) -> list[BaselineResult]:
    """Each site's model trained on its own rows alone, scored on the server's test set;
    ``converged`` as for :func:`pooled_model`."""
    results = []
    for site in split.sites:
        model = _train(site.X_train, site.y_train, rounds=rounds, penalty=penalty,
                       max_iter=max_iter, converged=converged)
        metrics = evaluation_metrics(model, split.X_test, split.y_test)
        results.append(BaselineResult(site.name, model, metrics))
    return results


def mean_metrics(results: list[BaselineResult]) -> dict[str, float]:
    """The unweighted mean of each numeric metric over ``results``: the typical lone site.

    Entries that are not numbers (a confusion matrix, an interval) have no mean and are left
    out.
    """
    if not results:
        return {}
    names = [name for name, value in results[0].metrics.items()
             if isinstance(value, int | float) and not isinstance(value, bool)]
    return {name: math.fsum(r.metrics[name] for r in results) / len(results) for name in names}


def _train(X: np.ndarray, y: np.ndarray, *, rounds: int, penalty: str, max_iter: int,
           converged: bool) -> LogisticRegression:
    if converged:
        return converged_model(X, y, penalty=penalty)
    return train_like_rounds(X, y, rounds=rounds, penalty=penalty, max_iter=max_iter)
