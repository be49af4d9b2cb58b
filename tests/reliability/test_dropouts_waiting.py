"""Clients that leave and do not answer sampling: the round waits for them, within a bound."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters
from fedsilo.server import History, Server
from fedsilo.simulation.inprocess import InProcessClientProxy
from tests.reliability.local_clients import AddOne, sites


def federation(wait_timeout: float) -> tuple[Server, list[InProcessClientProxy], list[int]]:
    manager, proxies = sites([AddOne(), AddOne(), AddOne()], wait_timeout=wait_timeout)
    trained: list[int] = []

    def count(replies: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        trained.append(len(replies))
        return {}

    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=3, min_evaluate_clients=3, min_available_clients=3,
        initial_parameters=ndarrays_to_parameters([np.zeros(1)]),
        fit_metrics_aggregation_fn=count)
    return Server(client_manager=manager, strategy=strategy), proxies, trained


def test_a_round_waits_for_a_client_that_comes_back() -> None:
    server, proxies, trained = federation(wait_timeout=30.0)

    def leave_after_round_1(server_round: int, history: History) -> None:
        if server_round == 1:
            server.client_manager().unregister(proxies[0])
            threading.Timer(0.3, server.client_manager().register, (proxies[0],)).start()

    server.on_round_end = leave_after_round_1
    history, _ = server.fit(3, timeout=10)
    assert trained == [3, 3, 3]
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3]


def test_a_round_without_enough_clients_is_skipped_after_the_wait_and_the_run_ends() -> None:
    server, proxies, trained = federation(wait_timeout=0.3)

    def leave_for_good(server_round: int, history: History) -> None:
        if server_round == 1:
            server.client_manager().unregister(proxies[0])

    server.on_round_end = leave_for_good
    history, _ = server.fit(3, timeout=10)
    assert trained == [3]  # rounds 2 and 3 found two of the three clients they need
    assert [r for r, _ in history.losses_distributed] == [1]
    np.testing.assert_array_equal(fl.common.parameters_to_ndarrays(server.parameters)[0], [1.0])
