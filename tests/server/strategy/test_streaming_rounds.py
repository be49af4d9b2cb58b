"""Streaming strategies in the server's round loop: the same model as without streaming,
while the loop keeps no client's tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import FitRes, NDArrays, parameters_to_ndarrays
from fedsilo.server import Server, SimpleClientManager
from fedsilo.simulation import InProcessClientProxy
from tests.server.strategy.helpers import initial

S = fl.server.strategy


class Drift(fl.client.NumPyClient):
    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.delta: NDArrays = [rng.normal(size=(3, 4)).astype(np.float32),
                                rng.normal(size=5)]
        self.n = int(rng.integers(1, 50))

    def fit(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[Any, ...]:
        return [p + d.astype(p.dtype) for p, d in zip(parameters, self.delta, strict=True)], \
            self.n, {}


def batch_only(strategy: Any) -> Any:
    """The same strategy object, with streaming turned off."""
    strategy.fit_accumulator = lambda server_round, parameters: None
    return strategy


def run(strategy: Any) -> tuple[NDArrays, list[list[FitRes]]]:
    manager = SimpleClientManager(seed=0)
    for i in range(6):
        manager.register(InProcessClientProxy(f"c{i}", Drift(i).to_client()))
    server = Server(client_manager=manager, strategy=strategy)
    kept: list[list[FitRes]] = []
    original = server.fit_round

    def fit_round(server_round: int, timeout: float | None) -> Any:
        out = original(server_round, timeout)
        assert out is not None
        kept.append([res for _, res in out[2][0]])
        return out

    server.fit_round = fit_round  # type: ignore[method-assign]
    server.fit(num_rounds=3, timeout=10)
    return parameters_to_ndarrays(server.parameters), kept


def common() -> dict[str, Any]:
    return dict(min_fit_clients=6, min_available_clients=6, fraction_evaluate=0.0,
                initial_parameters=initial())


FACTORIES = {
    "FedAvgM": lambda: S.FedAvgM(server_momentum=0.9, **common()),
    "FedAdam": lambda: S.FedAdam(**common()),
    "FedYogi": lambda: S.FedYogi(**common()),
    "FedProx": lambda: S.FedProx(proximal_mu=0.2, **common()),
    "DP fixed over FedAdagrad": lambda: S.DifferentialPrivacyServerSideFixedClipping(
        S.FedAdagrad(**common()), noise_multiplier=0.3, clipping_norm=2.0,
        num_sampled_clients=6, seed=5),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_streaming_round_loop_gives_the_batch_result_and_keeps_no_tensors(name: str) -> None:
    streamed, kept = run(FACTORIES[name]())
    batched, kept_batch = run(batch_only(FACTORIES[name]()))
    for a, b in zip(streamed, batched, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert all(not res.parameters.tensors for rnd in kept for res in rnd)
    assert all(res.parameters.tensors for rnd in kept_batch for res in rnd)
