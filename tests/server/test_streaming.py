"""Streaming aggregation: same result as aggregating the full list, without keeping it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.server import Server, SimpleClientManager
from fedsilo.simulation import InProcessClientProxy
from tests.server.recording import RecordingFedAvg


class Shift(fl.client.NumPyClient):
    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.delta = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3)]
        self.n = int(rng.integers(1, 50))

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return [p + d.astype(p.dtype) for p, d in zip(parameters, self.delta, strict=True)], \
            self.n, {"n": self.n}


def run(strategy: fl.server.strategy.FedAvg, n_clients: int = 6, rounds: int = 3) -> Server:
    manager = SimpleClientManager(seed=0)
    for i in range(n_clients):
        manager.register(InProcessClientProxy(f"c{i}", Shift(i).to_client()))
    server = Server(client_manager=manager, strategy=strategy)
    server.fit(num_rounds=rounds, timeout=10)
    return server


def initial() -> fl.common.Parameters:
    return ndarrays_to_parameters([np.zeros((4, 3), np.float32), np.zeros(3)])


def kwargs() -> dict[str, Any]:
    return dict(min_fit_clients=6, min_available_clients=6, fraction_evaluate=0.0,
                initial_parameters=initial(),
                fit_metrics_aggregation_fn=lambda m: {"total": sum(n for n, _ in m)})


def test_plain_fedavg_streams_and_a_subclass_overriding_aggregate_fit_does_not() -> None:
    params = initial()
    assert fl.server.strategy.FedAvg().fit_accumulator(1, params) is not None
    assert RecordingFedAvg().fit_accumulator(1, params) is None


def test_streaming_equals_aggregating_the_whole_list() -> None:
    streamed = run(fl.server.strategy.FedAvg(**kwargs()))
    listed = run(RecordingFedAvg(**kwargs()))
    for got, want in zip(parameters_to_ndarrays(streamed.parameters),
                         parameters_to_ndarrays(listed.parameters), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_streamed_round_releases_tensors_and_keeps_metrics() -> None:
    strategy = fl.server.strategy.FedAvg(**kwargs())
    server = run(strategy, rounds=0)
    fitted = server.fit_round(1, timeout=10)
    assert fitted is not None
    _, metrics, (results, failures) = fitted
    assert not failures and len(results) == 6
    assert all(res.parameters.tensors == [] for _, res in results)
    assert metrics == {"total": sum(Shift(i).n for i in range(6))}


def test_accept_failures_off_stops_a_streamed_round() -> None:
    class Fails(fl.client.NumPyClient):
        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
            raise ValueError("no data")

    manager = SimpleClientManager(seed=0)
    manager.register(InProcessClientProxy("good", Shift(1).to_client()))
    manager.register(InProcessClientProxy("bad", Fails().to_client()))
    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=2, min_available_clients=2, fraction_evaluate=0.0,
        accept_failures=False, initial_parameters=initial())
    server = Server(client_manager=manager, strategy=strategy)
    server.parameters = initial()
    fitted = server.fit_round(1, timeout=10)
    assert fitted is not None
    parameters, _, (results, failures) = fitted
    assert parameters is None and len(results) == 1
    assert "ValueError: no data" in str(failures[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_in_process_timeout_is_a_failure(seed: int) -> None:
    import time

    class Sleepy(fl.client.NumPyClient):
        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
            time.sleep(1.0)
            return parameters, 1, {}

    manager = SimpleClientManager(seed=seed)
    manager.register(InProcessClientProxy("slow", Sleepy().to_client()))
    manager.register(InProcessClientProxy("fast", Shift(2).to_client()))
    strategy = fl.server.strategy.FedAvg(min_fit_clients=2, min_available_clients=2,
                                         initial_parameters=initial())
    server = Server(client_manager=manager, strategy=strategy)
    server.parameters = initial()
    fitted = server.fit_round(1, timeout=0.2)
    assert fitted is not None
    _, _, (results, failures) = fitted
    assert [c.cid for c, _ in results] == ["fast"]
    assert "no reply within 0.2 s" in str(failures[0])
