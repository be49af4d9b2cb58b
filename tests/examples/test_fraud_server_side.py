"""The server's evaluation and strategy: figures as scikit-learn computes them, parameters
loaded into the server's model, FedAvg configured for all sites from zeros."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
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
from fedsilo.examples.fraud.model import get_model_parameters, new_model, set_initial_params
from fedsilo.examples.fraud.prepare import FederatedSplit
from fedsilo.examples.fraud.server_side import (
    build_strategy,
    evaluation_metrics,
    fit_round,
    get_evaluate_fn,
    weighted_metrics_mean,
)


@pytest.fixture(scope="module")
def trained(split: FederatedSplit) -> LogisticRegression:
    site = split.sites[0]
    return LogisticRegression(max_iter=200).fit(site.X_train, site.y_train)


def test_metrics_equal_scikit_learns(trained: LogisticRegression, split: FederatedSplit) -> None:
    X, y = split.X_test, split.y_test
    proba = trained.predict_proba(X)
    predicted = (proba[:, 1] > 0.5).astype(int)
    expected = {
        "loss": log_loss(y, proba),
        "accuracy": accuracy_score(y, predicted),
        "precision": precision_score(y, predicted),
        "recall": recall_score(y, predicted),
        "f1": f1_score(y, predicted),
        "roc_auc": roc_auc_score(y, proba[:, 1]),
        "average_precision": average_precision_score(y, proba[:, 1]),
    }
    got = evaluation_metrics(trained, X, y)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name
        assert isinstance(got[name], float)


def test_no_predicted_fraud_counts_as_zero_without_warnings(split: FederatedSplit) -> None:
    model = set_initial_params(new_model(), n_features=split.X_test.shape[1])
    model.intercept_[:] = -5.0  # predicts "no fraud" for everyone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = evaluation_metrics(model, split.X_test, split.y_test)
    assert got["precision"] == got["recall"] == got["f1"] == 0.0
    assert got["accuracy"] == pytest.approx(1 - split.y_test.mean())


def test_ranking_metrics_are_nan_for_a_single_class(trained: LogisticRegression,
                                           split: FederatedSplit) -> None:
    y = np.zeros_like(split.y_test)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = evaluation_metrics(trained, split.X_test, y)
    assert math.isnan(got["roc_auc"]) and math.isnan(got["average_precision"])


def test_evaluate_fn_loads_the_parameters_and_reports_the_round(
    trained: LogisticRegression, split: FederatedSplit
) -> None:
    server_model = set_initial_params(new_model(), n_features=split.X_test.shape[1])
    calls: list[tuple[int, float, dict[str, float]]] = []
    evaluate = get_evaluate_fn(server_model, split.X_test, split.y_test,
                               on_round=lambda r, loss, m: calls.append((r, loss, m)))
    loss, metrics = evaluate(3, get_model_parameters(trained), {})
    np.testing.assert_array_equal(server_model.coef_, trained.coef_)
    expected = evaluation_metrics(trained, split.X_test, split.y_test)
    assert loss == pytest.approx(expected.pop("loss"))
    assert metrics == pytest.approx(expected)
    assert calls == [(3, loss, metrics)]


def test_fit_round_sends_the_round_number() -> None:
    assert fit_round(4) == {"server_round": 4}


def test_strategy_waits_for_every_site_and_starts_from_zeros(split: FederatedSplit) -> None:
    model = new_model()
    strategy = build_strategy(model, split.X_test, split.y_test, n_sites=3)
    assert isinstance(strategy, fl.server.strategy.FedAvg)
    assert strategy.min_fit_clients == strategy.min_evaluate_clients == 3
    assert strategy.min_available_clients == 3
    assert strategy.on_fit_config_fn is fit_round
    assert strategy.initial_parameters is not None
    coef, intercept = fl.common.parameters_to_ndarrays(strategy.initial_parameters)
    assert coef.shape == (1, split.X_test.shape[1]) and intercept.shape == (1,)
    assert not coef.any() and not intercept.any()
    assert strategy.evaluate_fn is not None
    result = strategy.evaluate_fn(0, [coef, intercept], {})
    assert result is not None
    loss, metrics = result
    assert loss == pytest.approx(math.log(2))
    assert metrics["roc_auc"] == pytest.approx(0.5)


def test_weighted_metrics_mean_weights_by_examples_and_skips_text() -> None:
    merged = weighted_metrics_mean([(1, {"accuracy": 1.0, "site": "a"}),
                                    (3, {"accuracy": 0.0, "train_loss": 2.0})])
    assert merged == {"accuracy": 0.25, "train_loss": 2.0}
