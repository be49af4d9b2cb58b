"""Dropouts and stragglers over real gRPC: client processes killed mid-fit, a client slower than
the round timeout, and its late reply arriving in the next round."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import (
    ClientDisconnected,
    ClientTimeout,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from tests.conftest import free_port
from tests.interop.harness import FedsiloServerThread, ProcessGroup, wait_until
from tests.reliability.processes import assert_all_exit_cleanly, client_argv, environ

pytestmark = pytest.mark.slow

START = [np.array([1.0, -2.0, 4.0])]


class Ledger(fl.server.strategy.FedAvg):
    """FedAvg over whoever answered, keeping who sent what and who failed, per round."""

    def __init__(self, wait_for_first: int, **kwargs: Any) -> None:
        super().__init__(fraction_evaluate=0.0, initial_parameters=ndarrays_to_parameters(START),
                         **kwargs)
        self.wait_for_first = wait_for_first
        self.sent: dict[int, list[np.ndarray]] = {}
        self.results: dict[int, dict[str, tuple[list[np.ndarray], int]]] = {}
        self.failures: dict[int, list[BaseException]] = {}
        self.span: dict[int, float] = {}

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        if server_round == 1:
            assert client_manager.wait_for(self.wait_for_first, 60), "clients did not connect"
        self.sent[server_round] = parameters_to_ndarrays(parameters)
        self.span[server_round] = time.monotonic()
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.span[server_round] = time.monotonic() - self.span[server_round]
        self.results[server_round] = {
            client.cid: (parameters_to_ndarrays(res.parameters), res.num_examples)
            for client, res in results}
        self.failures[server_round] = list(failures)
        return super().aggregate_fit(server_round, results, failures)


def expected_mean(sent: list[np.ndarray], clients: list[tuple[float, int]]) -> np.ndarray:
    """What the scripted clients' ``0.5 * p + offset`` averages to, weighted by examples."""
    total = sum(n for _, n in clients)
    return np.sum([(0.5 * sent[0] + offset) * n for offset, n in clients], axis=0) / total


@pytest.mark.parametrize("accept_failures", [True, False])
def test_two_of_five_clients_killed_mid_fit_the_round_completes_with_three(
    tmp_path: Path, accept_failures: bool
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    fate = {"s1": (1.0, 10), "s2": (2.0, 20), "s3": (3.0, 30), "k1": (-7.0, 40),
            "k2": (-9.0, 50)}  # name: (offset, examples); k* die in round 1
    strategy = Ledger(wait_for_first=5, min_fit_clients=3, min_available_clients=3,
                      on_fit_config_fn=lambda r: {"server_round": r},
                      accept_failures=accept_failures)
    server = FedsiloServerThread(
        server_address=address, strategy=strategy,
        config=fl.server.ServerConfig(num_rounds=2, round_timeout=60.0))
    server.start(port)
    with ProcessGroup(tmp_path) as group:
        killed = {}
        for name, (offset, n) in fate.items():
            block = ["--block-round", "1"] if name.startswith("k") else []
            process = group.start(name, client_argv(address, name, offset, n, tmp_path, *block),
                                  environ())
            if block:
                killed[name] = process
        wait_until(lambda: all((tmp_path / f"{name}.round1").exists() for name in killed),
                   60, "the doomed clients to be inside fit")
        for process in killed.values():
            os.kill(process.popen.pid, signal.SIGKILL)
            process.popen.wait(10)
            group.processes.remove(process)
        history = server.join(60)
        assert_all_exit_cleanly(group, 30)

    survivors = [fate[name] for name in ("s1", "s2", "s3")]
    assert len(strategy.results[1]) == 3
    assert sorted(n for _, n in strategy.results[1].values()) == [10, 20, 30]
    failures = strategy.failures[1]
    assert len(failures) == 2
    for failure in failures:
        assert isinstance(failure, ClientDisconnected), repr(failure)
        assert failure.reason and failure.cid in str(failure)
    killed_cids = {f.cid for f in failures if isinstance(f, ClientDisconnected)}
    assert len(killed_cids | set(strategy.results[1])) == 5
    if accept_failures:
        # The round's model is the survivors' mean: the killed clients left no trace in it.
        np.testing.assert_allclose(strategy.sent[2][0],
                                   expected_mean(strategy.sent[1], survivors), rtol=1e-12)
    else:
        # A strategy that refuses partial rounds keeps the model, and the run goes on.
        np.testing.assert_array_equal(strategy.sent[2][0], START[0])
    # The server kept serving: round 2 ran with the three that are left.
    assert sorted(n for _, n in strategy.results[2].values()) == [10, 20, 30]
    assert strategy.failures[2] == []
    assert history is not None


def test_round_timeout_bounds_a_slow_client_and_its_late_reply_is_discarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The slow client answers round 1 (with 1e6 everywhere) only once round 2 has begun."""
    caplog.set_level(logging.WARNING, logger="fedsilo")
    port, timeout = free_port(), 5.0
    address = f"127.0.0.1:{port}"
    fate = {"fast1": (1.0, 10), "fast2": (2.0, 20), "slow": (5.0, 50)}
    release = tmp_path / "release"

    def config(server_round: int) -> dict[str, Any]:
        if server_round == 2:
            release.write_text("answer round 1 now, late")
        return {"server_round": server_round}

    strategy = Ledger(wait_for_first=3, min_fit_clients=3, min_available_clients=3,
                      on_fit_config_fn=config)
    server = FedsiloServerThread(
        server_address=address, strategy=strategy,
        config=fl.server.ServerConfig(num_rounds=3, round_timeout=timeout))
    server.start(port)
    with ProcessGroup(tmp_path) as group:
        for name, (offset, n) in fate.items():
            extra = ["--block-round", "1", "--poison"] if name == "slow" else []
            group.start(name, client_argv(address, name, offset, n, tmp_path, *extra), environ())
        server.join(90)
        assert_all_exit_cleanly(group, 30)

    # Round 1 ended at the timeout, without the slow client, which would have taken 120 s.
    assert sorted(n for _, n in strategy.results[1].values()) == [10, 20]
    [failure] = strategy.failures[1]
    assert isinstance(failure, ClientTimeout) and f"{timeout:g} s" in failure.reason
    assert timeout <= strategy.span[1] < timeout + 10
    slow_cid = failure.cid
    # Rounds 2 and 3: the slow client's answers are the ones to those rounds, never 1e6.
    for server_round in (2, 3):
        assert set(strategy.results[server_round]) == set(strategy.results[1]) | {slow_cid}
        arrays, n = strategy.results[server_round][slow_cid]
        np.testing.assert_allclose(arrays[0], 0.5 * strategy.sent[server_round][0] + 5.0,
                                   rtol=1e-12)
        for arrays, _ in strategy.results[server_round].values():
            assert np.abs(arrays[0]).max() < 1e3
        assert strategy.failures[server_round] == []
    np.testing.assert_allclose(strategy.sent[3][0],
                               expected_mean(strategy.sent[2], list(fate.values())), rtol=1e-12)
    dropped = [r for r in caplog.records if slow_cid in r.getMessage()
               and "late" in r.getMessage().lower()]
    assert dropped, "the discarded late reply should be logged"
