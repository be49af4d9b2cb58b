"""The baselines: trained like the federation (same settings, same iterations), scored on the
server's test set; the federation's reason to exist shows in the comparison."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fedsilo.examples.fraud.baselines import (
    BaselineResult,
    mean_metrics,
    pooled_model,
    site_models,
    train_like_rounds,
)
from fedsilo.examples.fraud.model import new_model, set_initial_params
from fedsilo.examples.fraud.prepare import FederatedSplit
from fedsilo.examples.fraud.server_side import evaluation_metrics


def test_training_like_rounds_is_repeated_warm_started_fits(split: FederatedSplit) -> None:
    site = split.sites[0]
    model = set_initial_params(new_model(max_iter=4), n_features=site.X_train.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            model.fit(site.X_train, site.y_train)
    got = train_like_rounds(site.X_train, site.y_train, rounds=3, max_iter=4)
    np.testing.assert_allclose(got.coef_, model.coef_)
    once = train_like_rounds(site.X_train, site.y_train, rounds=1, max_iter=4)
    assert not np.allclose(once.coef_, got.coef_)


def test_pooled_model_trains_on_every_sites_rows(split: FederatedSplit) -> None:
    X = np.concatenate([s.X_train for s in split.sites])
    y = np.concatenate([s.y_train for s in split.sites])
    result = pooled_model(split, rounds=2)
    np.testing.assert_allclose(result.model.coef_, train_like_rounds(X, y, rounds=2).coef_)
    assert result.metrics == evaluation_metrics(result.model, split.X_test, split.y_test)


def test_site_models_train_on_their_own_rows(split: FederatedSplit) -> None:
    results = site_models(split, rounds=2)
    assert [r.name for r in results] == [s.name for s in split.sites]
    for result, site in zip(results, split.sites, strict=True):
        expected = train_like_rounds(site.X_train, site.y_train, rounds=2)
        np.testing.assert_allclose(result.model.coef_, expected.coef_)
        assert result.metrics == evaluation_metrics(result.model, split.X_test, split.y_test)


def test_mean_metrics_is_the_plain_mean() -> None:
    results = [BaselineResult("a", None, {"f1": 0.2, "loss": 1.0}),  # type: ignore[arg-type]
               BaselineResult("b", None, {"f1": 0.4, "loss": 3.0})]  # type: ignore[arg-type]
    assert mean_metrics(results) == pytest.approx({"f1": 0.3, "loss": 2.0})
    assert mean_metrics([]) == {}


def test_pooling_beats_the_typical_lone_site(split: FederatedSplit) -> None:
    pooled = pooled_model(split).metrics
    alone = mean_metrics(site_models(split))
    assert pooled["roc_auc"] > alone["roc_auc"] + 0.02
