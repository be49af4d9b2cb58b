"""The site's client: what fit and evaluate return, and the script-mode entry point."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import log_loss

import fedsilo as fl
from fedsilo.examples.fraud.client import FraudClient, main
from fedsilo.examples.fraud.model import (
    fit_proximal,
    get_model_parameters,
    load_model,
    new_model,
    set_initial_params,
)
from fedsilo.examples.fraud.prepare import FederatedSplit, SiteData, write_site_channel
from fedsilo.examples.fraud.server_side import build_strategy, get_evaluate_fn, initial_model
from tests.conftest import LocalFederation, free_port


@pytest.fixture
def site(split: FederatedSplit) -> SiteData:
    return split.sites[0]


def zeros(n_features: int) -> list[np.ndarray]:
    return [np.zeros((1, n_features)), np.zeros(1)]


def test_parameters_before_any_training_are_zeros(site: SiteData) -> None:
    coef, intercept = FraudClient(site).get_parameters({})
    assert coef.shape == (1, site.X_train.shape[1]) and intercept.shape == (1,)
    assert not coef.any() and not intercept.any()


def test_fit_returns_parameters_example_count_and_train_loss(site: SiteData) -> None:
    client = FraudClient(site, new_model(max_iter=10))
    params, n, metrics = client.fit(zeros(site.X_train.shape[1]), {"server_round": 1})
    assert [p.shape for p in params] == [(1, site.X_train.shape[1]), (1,)]
    assert np.abs(params[0]).sum() > 0
    assert n == len(site.X_train)
    expected = log_loss(site.y_train, client.model.predict_proba(site.X_train))
    assert metrics["train_loss"] == pytest.approx(expected)
    assert 0.5 < float(metrics["train_accuracy"]) <= 1.0


def test_fit_starts_from_the_servers_parameters(site: SiteData) -> None:
    client = FraudClient(site, new_model(max_iter=10))
    first, _, first_metrics = client.fit(zeros(site.X_train.shape[1]), {})
    again = FraudClient(site, new_model(max_iter=10))
    _, _, later_metrics = again.fit(first, {})
    assert float(later_metrics["train_loss"]) < float(first_metrics["train_loss"])


def test_evaluate_scores_the_given_parameters_on_validation_rows(site: SiteData) -> None:
    client = FraudClient(site)
    params, _, _ = FraudClient(site, new_model(max_iter=20)).fit(
        zeros(site.X_train.shape[1]), {})
    loss, n, metrics = client.evaluate(params, {})
    assert n == len(site.X_val)
    assert set(metrics) == {"accuracy"}
    reference = set_initial_params(new_model(), site.X_train.shape[1])
    reference.coef_, reference.intercept_ = params
    assert loss == pytest.approx(log_loss(site.y_val, reference.predict_proba(site.X_val)))
    assert metrics["accuracy"] == pytest.approx(reference.score(site.X_val, site.y_val))
    assert isinstance(loss, float)


def test_zero_parameters_give_the_log_loss_of_a_coin(site: SiteData) -> None:
    loss, _, _ = FraudClient(site).evaluate(zeros(site.X_train.shape[1]), {})
    assert loss == pytest.approx(np.log(2))


def test_main_without_training_data_says_how_to_give_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SM_CHANNEL_TRAIN", raising=False)
    assert main(["--server-address", "127.0.0.1:1"]) == 2
    assert "SM_CHANNEL_TRAIN" in capsys.readouterr().err


def test_main_with_an_empty_channel_names_the_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--server-address", "127.0.0.1:1", "--train", str(tmp_path)]) == 2
    assert "train.csv" in capsys.readouterr().err


def test_main_joins_the_federation_and_saves_the_final_model(
    site: SiteData, split: FederatedSplit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(write_site_channel(site, tmp_path / "train")))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    address = f"127.0.0.1:{free_port()}"
    server_model = new_model()
    strategy = build_strategy(server_model, split.X_test, split.y_test, n_sites=1)
    histories: list[fl.server.History] = []
    server = threading.Thread(target=lambda: histories.append(fl.server.start_server(
        server_address=address, strategy=strategy,
        config=fl.server.ServerConfig(num_rounds=2, round_timeout=30))), daemon=True)
    server.start()
    assert main(["--server-address", address, "--max-iter", "5", "--max-wait-time", "20"]) == 0
    server.join(30)
    assert not server.is_alive() and histories
    assert [r for r, _ in histories[0].losses_centralized] == [0, 1, 2]
    saved = load_model(tmp_path / "model")
    np.testing.assert_array_equal(saved.coef_, server_model.coef_)


def test_fit_applies_the_proximal_term_that_fedprox_sends(site: SiteData) -> None:
    start = FraudClient(site, new_model(max_iter=30)).fit(zeros(site.X_train.shape[1]), {})[0]
    loose, _, _ = FraudClient(site, new_model(max_iter=30)).fit(start, {"proximal_mu": 0.0})
    tight, _, metrics = FraudClient(site, new_model(max_iter=30)).fit(
        start, {"proximal_mu": 100.0})
    moved = [float(np.linalg.norm(np.concatenate([a.ravel() - b.ravel()
                                                  for a, b in zip(p, start, strict=True)])))
             for p in (loose, tight)]
    assert moved[0] > 10 * moved[1] > 0
    # The client trained exactly FedProx's local objective from the global parameters.
    direct = fit_proximal(new_model(max_iter=30), site.X_train, site.y_train, start,
                          proximal_mu=100.0)
    np.testing.assert_allclose(tight[0], direct.coef_)
    assert float(metrics["train_loss"]) > 0
    with pytest.raises(ValueError, match="proximal_mu"):
        FraudClient(site).fit(start, {"proximal_mu": "lots"})


@pytest.mark.slow
def test_fedprox_federation_over_grpc_learns(split: FederatedSplit) -> None:
    federation = LocalFederation()
    for site in split.sites:
        federation.start_client(FraudClient(site, new_model(max_iter=50)))
    server_model = initial_model(split.X_test.shape[1])
    strategy = fl.server.strategy.FedProx(
        proximal_mu=0.1, min_fit_clients=3, min_evaluate_clients=3, min_available_clients=3,
        evaluate_fn=get_evaluate_fn(server_model, split.X_test, split.y_test),
        initial_parameters=fl.common.ndarrays_to_parameters(get_model_parameters(server_model)))
    history = federation.run_server(strategy, num_rounds=3)
    federation.join_clients()
    losses = [loss for _, loss in history.losses_centralized]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert float(history.metrics_centralized["accuracy"][-1][1]) > 0.6
