"""The server's part: evaluate the global model on its own test set; build the FedAvg strategy.

The test set never leaves the server and the sites never see it, so the figures logged each
round measure the global model on providers no site trained on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

import fedsilo as fl
from fedsilo.common import Metrics, NDArrays, Scalar
from fedsilo.examples.fraud.model import (
    get_model_parameters,
    new_model,
    set_initial_params,
    set_model_params,
)

__all__ = [
    "METRIC_NAMES",
    "EvaluateFn",
    "RoundCallback",
    "build_strategy",
    "evaluation_metrics",
    "fit_round",
    "get_evaluate_fn",
    "initial_model",
    "weighted_metrics_mean",
]

METRIC_NAMES = ("loss", "accuracy", "precision", "recall", "f1", "roc_auc", "average_precision")

EvaluateFn = Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]]]
RoundCallback = Callable[[int, float, dict[str, float]], None]


def evaluation_metrics(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Log loss, accuracy, precision, recall, F1, ROC-AUC and average precision (PR-AUC) of
    ``model`` on ``(X, y)``.

    Precision, recall and F1 are about the fraud class and count as 0 when undefined (no
    predicted or no actual fraud); ROC-AUC and average precision are NaN when ``y`` holds one
    class only.
    """
    proba = model.predict_proba(X)
    predicted = model.classes_[np.argmax(proba, axis=1)]
    fraud_score = proba[:, list(model.classes_).index(1)]
    both = len(np.unique(y)) == 2
    roc_auc = float(roc_auc_score(y, fraud_score)) if both else math.nan
    average_precision = float(average_precision_score(y, fraud_score)) if both else math.nan
    return {
        "loss": float(log_loss(y, proba, labels=model.classes_)),
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "roc_auc": roc_auc,
        "average_precision": average_precision,
    }


def get_evaluate_fn(
    model: LogisticRegression,
    X_test: np.ndarray,
    y_test: np.ndarray,
    on_round: RoundCallback | None = None,
) -> EvaluateFn:
    """The strategy's ``evaluate_fn``: load the round's parameters into ``model`` and score it.

    ``model`` keeps the parameters of the last evaluation, so after a run it holds the final
    global model. ``on_round(server_round, loss, metrics)`` is called after each evaluation.
    """

    def evaluate(
        server_round: int, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]]:
        set_model_params(model, parameters)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = evaluation_metrics(model, X_test, y_test)
        loss = scores.pop("loss")
        if on_round is not None:
            on_round(server_round, loss, dict(scores))
        return loss, dict(scores)

    return evaluate


def fit_round(server_round: int) -> dict[str, Scalar]:
    """The config sent with each fit instruction: the round number."""
    return {"server_round": server_round}


def weighted_metrics_mean(results: list[tuple[int, Metrics]]) -> Metrics:
    """Each numeric metric averaged over clients, weighted by their example counts.

    Used for the sites' training and validation metrics, so that the History records them.
    """
    sums: dict[str, float] = {}
    weights: dict[str, int] = {}
    for num_examples, metrics in results:
        for name, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                sums[name] = sums.get(name, 0.0) + num_examples * float(value)
                weights[name] = weights.get(name, 0) + num_examples
    return {name: sums[name] / weights[name] for name in sums if weights[name] > 0}


def initial_model(n_features: int, penalty: str = "l2", max_iter: int = 10) -> LogisticRegression:
    """A model with zero parameters, as the global model starts."""
    return set_initial_params(new_model(penalty, max_iter), n_features)


def build_strategy(
    model: LogisticRegression,
    X_test: np.ndarray,
    y_test: np.ndarray,
    n_sites: int,
    on_round: RoundCallback | None = None,
) -> fl.server.strategy.FedAvg:
    """FedAvg over all ``n_sites`` sites every round, evaluated on the server's test set.

    The global model starts from zeros (so no client is asked for initial parameters) and
    ``model`` receives each round's global parameters. The sites' training and validation
    metrics are averaged with :func:`weighted_metrics_mean`.
    """
    set_initial_params(model, n_features=X_test.shape[1])
    return fl.server.strategy.FedAvg(
        min_fit_clients=n_sites,
        min_evaluate_clients=n_sites,
        min_available_clients=n_sites,
        evaluate_fn=get_evaluate_fn(model, X_test, y_test, on_round),
        on_fit_config_fn=fit_round,
        initial_parameters=fl.common.ndarrays_to_parameters(get_model_parameters(model)),
        fit_metrics_aggregation_fn=weighted_metrics_mean,
        evaluate_metrics_aggregation_fn=weighted_metrics_mean,
    )
