"""200 concurrent clients on 127.0.0.1 for 5 rounds: every client answers every round.

Clients are threads in four processes, each thread with its own gRPC channel and stream,
so the machine's two cores can hold them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters
from tests.conftest import free_port
from tests.interop.harness import FedsiloServerThread, ProcessGroup
from tests.reliability.client_swarm import examples_of, offset_of
from tests.reliability.processes import HERE, assert_all_exit_cleanly, environ

pytestmark = pytest.mark.slow

N_CLIENTS, N_PROCESSES, ROUNDS = 200, 4, 5


class Census:
    """Who trained and evaluated in each round, and the model after it, seen through the
    hooks of a plain FedAvg (so the round loop's streaming aggregation is what runs)."""

    def __init__(self) -> None:
        self.trained: dict[int, list[int]] = {}
        self.evaluated: list[int] = []
        self.models: dict[int, np.ndarray] = {}

    def fit_metrics(self, replies: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        self.trained[len(self.trained) + 1] = sorted(int(m["client"]) for _, m in replies)
        return {}

    def evaluate_metrics(self, replies: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        self.evaluated.append(len(replies))
        return {}

    def evaluate(self, server_round: int, arrays: list[np.ndarray], config: Any) -> None:
        self.models[server_round] = arrays[0]


def test_200_clients_5_rounds_none_lost(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    start = np.linspace(0.0, 1.0, 8)
    census = Census()
    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=N_CLIENTS, min_evaluate_clients=N_CLIENTS,
        min_available_clients=N_CLIENTS, initial_parameters=ndarrays_to_parameters([start]),
        fit_metrics_aggregation_fn=census.fit_metrics,
        evaluate_metrics_aggregation_fn=census.evaluate_metrics, evaluate_fn=census.evaluate)
    server = FedsiloServerThread(server_address=address, strategy=strategy,
                                 config=fl.server.ServerConfig(num_rounds=ROUNDS,
                                                               round_timeout=60.0))
    server.start(port)
    started = time.monotonic()
    per_process = N_CLIENTS // N_PROCESSES
    with ProcessGroup(tmp_path) as group:
        for p in range(N_PROCESSES):
            group.start(f"swarm-{p}", [sys.executable, str(HERE / "client_swarm.py"),
                                       "--address", address, "--first", str(p * per_process),
                                       "--count", str(per_process)], environ())
        history = server.join(120)
        assert_all_exit_cleanly(group, 60)
    elapsed = time.monotonic() - started

    # 200 sampled each round and 200 distinct answers: no failure, no client lost.
    assert census.trained == {r: list(range(N_CLIENTS)) for r in range(1, ROUNDS + 1)}
    assert census.evaluated == [N_CLIENTS] * ROUNDS
    assert [r for r, _ in history.losses_distributed] == list(range(1, ROUNDS + 1))
    # The result is the formula's: each round p <- 0.5 p + (weighted mean of the offsets).
    weights = np.array([examples_of(i) for i in range(N_CLIENTS)], dtype=np.float64)
    shift = float(np.dot(weights, [offset_of(i) for i in range(N_CLIENTS)]) / weights.sum())
    expected = start
    for _ in range(ROUNDS):
        expected = 0.5 * expected + shift
    np.testing.assert_allclose(census.models[ROUNDS], expected, rtol=1e-12)
    print(f"200 clients, {ROUNDS} rounds: {elapsed:.1f} s from the first client start")

