"""One contract every strategy passes, parametrized over all of them."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ClientFailure, Code, EvaluateRes, Status
from fedsilo.server import SimpleClientManager
from fedsilo.server.strategy.dp_wrapper import PrivacyWrapper
from tests.server.strategy.helpers import (
    STRATEGIES,
    arrays,
    configured,
    fit_results,
    initial,
    proxy,
)

NAMES = sorted(STRATEGIES)


def build(name: str, **kwargs: Any) -> Any:
    return STRATEGIES[name][0](**kwargs)


def test_every_strategy_is_exported_under_its_flower_name() -> None:
    for name in NAMES:
        assert hasattr(fl.server.strategy, name) and name in fl.server.strategy.__all__


@pytest.mark.parametrize("name", NAMES)
def test_empty_results_give_no_parameters(name: str) -> None:
    strategy = configured(build(name))
    assert strategy.aggregate_fit(1, [], []) == (None, {})
    assert strategy.aggregate_evaluate(1, [], []) == (None, {})


@pytest.mark.parametrize("name", NAMES)
def test_failures_with_accept_failures_on_and_off(name: str) -> None:
    results = fit_results(1)
    failure = ClientFailure("c99", "timed out")
    accepting = configured(build(name, accept_failures=True))
    refusing = configured(build(name, accept_failures=False))
    got_accepting, _ = accepting.aggregate_fit(1, results, [failure])
    got_refusing, _ = refusing.aggregate_fit(1, results, [failure])
    if isinstance(accepting, PrivacyWrapper):
        # Noise is calibrated to the sampled count: a private round refuses any failure.
        assert got_accepting is None and got_refusing is None
    elif name == "FaultTolerantFedAvg":
        # Always accepts failures while the completion rate (9 of 10) is above 0.5 ...
        assert got_accepting is not None and got_refusing is not None
        # ... and refuses a round that completed below it.
        many = [ClientFailure(f"f{i}", "down") for i in range(10)]
        assert configured(build(name)).aggregate_fit(1, results, many) == (None, {})
    else:
        assert got_accepting is not None and got_refusing is None
    loss_results = [(proxy("e"), EvaluateRes(Status(Code.OK, ""), 0.3, 4, {}))]
    if not isinstance(accepting, PrivacyWrapper) and name != "FaultTolerantFedAvg":
        assert refusing.aggregate_evaluate(1, loss_results, [failure]) == (None, {})
        assert accepting.aggregate_evaluate(1, loss_results, [failure])[0] == pytest.approx(0.3)


@pytest.mark.parametrize("name", NAMES)
def test_same_inputs_and_seed_give_the_same_aggregate(name: str) -> None:
    first = arrays(configured(build(name)).aggregate_fit(1, fit_results(5), [])[0])
    second = arrays(configured(build(name)).aggregate_fit(1, fit_results(5), [])[0])
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    other = arrays(configured(build(name)).aggregate_fit(1, fit_results(6), [])[0])
    assert not np.array_equal(first[0], other[0])


def own_parameters(strategy: Any) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(type(strategy)).parameters)
    return {k: p for k, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def test_constructors_are_keyword_only_except_the_dp_wrappers_positional_core() -> None:
    for name in NAMES:
        strategy = build(name)
        params = own_parameters(strategy)
        if isinstance(strategy, PrivacyWrapper):
            # Flower's wrappers take (strategy, noise_multiplier, ...) positionally.
            assert list(params)[:2] == ["strategy", "noise_multiplier"]
            assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY
        else:
            assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values()), name


ODD_VALUES: dict[str, Any] = {
    "server_learning_rate": 0.37, "server_momentum": 0.61, "proximal_mu": 0.23, "eta": 0.031,
    "eta_l": 0.017, "beta_1": 0.45, "beta_2": 0.55, "tau": 0.002, "q_param": 0.7,
    "qffl_learning_rate": 0.05, "min_completion_rate_fit": 0.33,
    "min_completion_rate_evaluate": 0.44, "beta": 0.11, "num_malicious_clients": 1,
    "num_clients_to_keep": 3, "noise_multiplier": 0.3, "clipping_norm": 2.5,
    "num_sampled_clients": 7, "initial_clipping_norm": 0.9, "target_clipped_quantile": 0.3,
    "clip_norm_lr": 0.15, "clipped_count_stddev": 4.0, "target_delta": 1e-6, "seed": 11,
}


@pytest.mark.parametrize("name", NAMES)
def test_constructor_stores_its_arguments_unchanged(name: str) -> None:
    cls = type(build(name))
    params = own_parameters(build(name))
    kwargs: dict[str, Any] = {}
    for key in params:
        if key == "strategy":
            kwargs[key] = fl.server.strategy.FedAvg()
        elif key == "initial_parameters":
            kwargs[key] = initial()
        elif key in ODD_VALUES:
            kwargs[key] = ODD_VALUES[key]
    if "fraction_fit" in params or not isinstance(build(name), PrivacyWrapper):
        fit_config = lambda r: {"r": r}  # noqa: E731
        kwargs.update(fraction_fit=0.3, min_fit_clients=5, on_fit_config_fn=fit_config)
    if cls is fl.server.strategy.FaultTolerantFedAvg:
        kwargs.pop("accept_failures", None)
    strategy = cls(**kwargs)
    for key, value in kwargs.items():
        assert getattr(strategy, key) is value, f"{name}.{key}"


@pytest.mark.parametrize("name", NAMES)
def test_config_callbacks_are_honoured(name: str) -> None:
    strategy = build(name, on_fit_config_fn=lambda r: {"lr": 0.1, "round": r},
                     on_evaluate_config_fn=lambda r: {"batches": 3, "round": r})
    manager = SimpleClientManager(seed=0, wait_timeout=1)
    for i in range(9):
        manager.register(proxy(f"c{i}"))
    fit = strategy.configure_fit(4, initial(), manager)
    assert len(fit) == 9
    for _, ins in fit:
        assert ins.config["lr"] == 0.1 and ins.config["round"] == 4
    evaluate = strategy.configure_evaluate(4, initial(), manager)
    assert evaluate and all(ins.config == {"batches": 3, "round": 4} for _, ins in evaluate)


@pytest.mark.parametrize("name", NAMES)
def test_min_clients_are_respected(name: str) -> None:
    manager = SimpleClientManager(seed=0, wait_timeout=0.2)
    for i in range(4):
        manager.register(proxy(f"c{i}"))
    strategy = build(name, fraction_fit=0.1, min_fit_clients=3, min_available_clients=3)
    assert len(strategy.configure_fit(1, initial(), manager)) == 3
    waiting = build(name, min_fit_clients=5, min_available_clients=5)
    assert waiting.configure_fit(1, initial(), manager) == []


@pytest.mark.parametrize("name", NAMES)
def test_streams_exactly_when_documented_and_streaming_equals_batch(name: str) -> None:
    factory, streams = STRATEGIES[name]
    results = fit_results(8)
    batch = configured(factory())
    streaming = configured(factory())
    accumulator = streaming.fit_accumulator(1, initial())
    assert (accumulator is not None) == streams
    if accumulator is None:
        return
    for client, res in results:
        accumulator.add(client, res, fl.common.parameters_to_ndarrays(res.parameters))
    got, metrics = accumulator.finish(results, [])
    want, want_metrics = batch.aggregate_fit(1, results, [])
    for a, b in zip(arrays(got), arrays(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert metrics == want_metrics


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trips(name: str) -> None:
    strategy = configured(build(name))
    strategy.aggregate_fit(1, fit_results(2), [])
    state = strategy.state_dict()
    fresh = configured(build(name))
    fresh.load_state_dict(state)
    again = fresh.state_dict()
    assert set(again) == set(state)
    first = arrays(configured(strategy).aggregate_fit(2, fit_results(3), [])[0])
    second = arrays(configured(fresh).aggregate_fit(2, fit_results(3), [])[0])
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
