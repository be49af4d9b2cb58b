"""Initial parameters from a client: a failing client is passed over, and when no other
client is connected yet the server waits for one instead of giving up."""

from __future__ import annotations

import threading

import numpy as np

import fedsilo as fl
from fedsilo.server import Server, SimpleClientManager
from fedsilo.simulation.inprocess import InProcessClientProxy


class Model(fl.client.NumPyClient):
    def __init__(self, start: float, broken: bool = False) -> None:
        self.start, self.broken = start, broken

    def get_parameters(self, config):  # type: ignore[no-untyped-def]
        if self.broken:
            raise RuntimeError("this site cannot share its initial model")
        return [np.full(3, self.start)]

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        return [parameters[0] + 1.0], 1, {}

    def evaluate(self, parameters, config):  # type: ignore[no-untyped-def]
        return 0.0, 1, {}


def _proxy(cid: str, client: Model) -> InProcessClientProxy:
    return InProcessClientProxy(cid, client.to_client())


def test_server_waits_for_a_client_that_can_give_initial_parameters() -> None:
    manager = SimpleClientManager(seed=0, wait_timeout=30.0)
    manager.register(_proxy("broken", Model(0.0, broken=True)))
    strategy = fl.server.strategy.FedAvg(min_fit_clients=1, min_available_clients=1,
                                         fraction_evaluate=0.0)
    server = Server(client_manager=manager, strategy=strategy)
    late = threading.Timer(0.5, lambda: manager.register(_proxy("late", Model(5.0))))
    late.start()
    try:
        server.fit(num_rounds=1, timeout=10.0)
    finally:
        late.cancel()
    final = fl.common.parameters_to_ndarrays(server.parameters)
    # The late client's model (5.0) is the start; one round of training by either client
    # adds 1.0 (the broken client trains fine, it only refuses get_parameters).
    np.testing.assert_array_equal(final[0], np.full(3, 6.0))


def test_gives_up_after_the_wait_timeout_with_a_clear_error() -> None:
    manager = SimpleClientManager(seed=0, wait_timeout=0.3)
    manager.register(_proxy("broken", Model(0.0, broken=True)))
    server = Server(client_manager=manager, strategy=fl.server.strategy.FedAvg(
        min_fit_clients=1, min_available_clients=1))
    try:
        server.fit(num_rounds=1, timeout=5.0)
    except RuntimeError as exc:
        assert "no client could provide initial parameters" in str(exc)
    else:
        raise AssertionError("the run should stop: no client can give initial parameters")
