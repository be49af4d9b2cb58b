"""A Ray node lost in the middle of a simulation: the run goes on with the nodes left.

The test starts a real two-node cluster on 127.0.0.1 (two ``ray start`` processes, one CPU
each), runs 1,000 virtual clients, 50 a round, through ``start_simulation(ray_address=...)``
with no round timeout, and SIGKILLs the second node's raylet as round 3 starts. The
simulation must finish, the client that was sent to the lost node's actor must be in the
History's failures as "worker node lost", the next rounds must train 50 clients on the head
node alone, and take about as long as the rounds before the loss. A node that joins as round
6 starts must get actors again: the last round trains on two nodes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import fedsilo as fl
import fedsilo.simulation as sim
from fedsilo.cli.main import app
from fedsilo.common import NDArrays, Scalar, ndarrays_to_parameters
from tests.simulation.ray_cluster import RayCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROUNDS = 9
LOST_IN = 3
JOINS_IN = 6
PER_ROUND = 50


class NodeReportingClient(fl.client.NumPyClient):
    """Adds one to the parameters and says which Ray node it trained on."""

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]
            ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        import ray

        return ([p + 1.0 for p in parameters], 1,
                {"node": str(ray.get_runtime_context().get_node_id())})

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]
                 ) -> tuple[float, int, dict[str, Scalar]]:
        return 0.0, 1, {}


def client_fn(cid: str) -> fl.client.Client:
    return NodeReportingClient().to_client()


class KillsANodeInRound(fl.server.strategy.FedAvg):
    """FedAvg that records each round's nodes and duration, and runs ``on_round(r)`` as
    round r starts."""

    def __init__(self, on_round: Any) -> None:
        super().__init__(fraction_fit=PER_ROUND / 1000, min_fit_clients=PER_ROUND,
                         fraction_evaluate=0.0, min_available_clients=PER_ROUND,
                         initial_parameters=ndarrays_to_parameters([np.zeros(4)]))
        self.on_round = on_round
        self.started: dict[int, float] = {}
        self.seconds: dict[int, float] = {}
        self.nodes: dict[int, set[str]] = {}
        self.results: dict[int, int] = {}

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        self.on_round(server_round)
        self.started[server_round] = time.monotonic()
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.seconds[server_round] = time.monotonic() - self.started[server_round]
        self.nodes[server_round] = {str(res.metrics["node"]) for _, res in results}
        self.results[server_round] = len(results)
        return super().aggregate_fit(server_round, results, failures)


def test_a_node_lost_mid_run_leaves_the_run_to_the_other_node() -> None:
    with RayCluster(extra_nodes=1, cpus=1) as cluster:
        cluster.attach_driver()

        def on_round(server_round: int) -> None:
            if server_round == LOST_IN:
                cluster.kill_raylet(1)
            if server_round == JOINS_IN:
                cluster.add_node(cpus=1)

        strategy = KillsANodeInRound(on_round)
        history = sim.start_simulation(
            client_fn=client_fn, num_clients=1000, strategy=strategy, backend="ray",
            config=fl.server.ServerConfig(num_rounds=ROUNDS, round_timeout=None),
            client_manager=sim.VirtualClientManager(seed=3), ray_address=cluster.address,
            ray_init_args={"_node_ip_address": "127.0.0.1", "log_to_driver": False})
    before = [strategy.seconds[r] for r in range(1, LOST_IN)]
    after = [strategy.seconds[r] for r in range(LOST_IN + 1, JOINS_IN)]
    print(f"rounds before the loss {before}, after {after}")
    assert all(len(strategy.nodes[r]) == 2 for r in range(1, LOST_IN)), strategy.nodes
    lost = [(r, cid, reason) for r, cid, reason in history.failures]
    assert lost, "no client was reported lost with the node"
    assert all(r == LOST_IN and reason.startswith("worker node lost") for r, _, reason in lost)
    assert strategy.results[LOST_IN] == PER_ROUND - len(lost)
    (survivor,) = strategy.nodes[LOST_IN + 1]
    for server_round in range(LOST_IN + 1, JOINS_IN):
        assert strategy.results[server_round] == PER_ROUND
        assert strategy.nodes[server_round] == {survivor}
    for server_round in range(JOINS_IN, ROUNDS + 1):
        assert strategy.results[server_round] == PER_ROUND
    # The new node's actor starts while round 6 runs; the last round uses it.
    assert len(strategy.nodes[ROUNDS]) == 2, strategy.nodes
    # Half the CPUs are gone, so a round may take longer, but nothing waits for the lost node.
    assert max(after) < 3 * max(before) + 1.0, (before, after)


def test_fedsilo_simulate_attaches_to_a_running_cluster(tmp_path: Path) -> None:
    with RayCluster(extra_nodes=0, cpus=1) as cluster:
        cluster.attach_driver()
        result = CliRunner().invoke(app, [
            "simulate", "--output", str(tmp_path), "--rounds", "1", "--sites", "2",
            "--providers", "1000", "--ray-address", cluster.address])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["backend"] == "ray"
