from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.client.app import RetryPolicy
from tests.conftest import free_port


def test_backoff_grows_and_stops_at_max_retries() -> None:
    policy = RetryPolicy(max_retries=4, initial_delay=1.0, max_delay=100.0)
    delays = [policy.next_delay() for _ in range(5)]
    assert delays[-1] is None
    upper_bounds = [1.0, 2.0, 4.0, 8.0]
    for delay, bound in zip(delays[:4], upper_bounds, strict=True):
        assert delay is not None and bound / 2 <= delay <= bound


def test_total_wait_is_bounded_by_max_wait_time() -> None:
    policy = RetryPolicy(max_wait_time=3.0, initial_delay=1.0)
    total = 0.0
    while (delay := policy.next_delay()) is not None:
        total += delay
    assert total == pytest.approx(3.0)


def test_client_gives_up_with_a_clear_error_when_no_server_comes() -> None:
    class Idle(fl.client.NumPyClient):
        pass

    started = time.monotonic()
    with pytest.raises(ConnectionError, match="could not reach the server"):
        fl.client.start_numpy_client(server_address=f"127.0.0.1:{free_port()}", client=Idle(),
                                     max_retries=2, max_wait_time=2)
    assert time.monotonic() - started < 15


def test_client_started_before_the_server_joins_once_it_is_up() -> None:
    port = free_port()

    class One(fl.client.NumPyClient):
        def get_parameters(self, config: dict) -> list[np.ndarray]:
            return [np.zeros(2)]

        def fit(self, parameters: list[np.ndarray], config: dict) -> tuple:
            return [parameters[0] + 1], 1, {}

    errors: list[BaseException] = []

    def run() -> None:
        try:
            fl.client.start_numpy_client(server_address=f"127.0.0.1:{port}", client=One(),
                                         max_wait_time=30)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(1.0)  # the point of the test: the server is not up yet
    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=1, min_available_clients=1, fraction_evaluate=0.0,
        evaluate_fn=lambda rnd, params, cfg: (float(params[0].sum()), {}))
    history = fl.server.start_server(server_address=f"127.0.0.1:{port}", strategy=strategy,
                                     config=fl.server.ServerConfig(num_rounds=2))
    thread.join(10)
    assert not thread.is_alive() and not errors
    assert history.losses_centralized == [(0, 0.0), (1, 2.0), (2, 4.0)]
