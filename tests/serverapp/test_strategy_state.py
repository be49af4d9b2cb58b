"""A strategy stopped after a round and started again from its ``state_dict()`` ends where
the uninterrupted run ends: ``start()`` on a Grid whose ``resume()`` hands back the round,
the Result and (loaded into a new strategy) the state that ``on_round_end`` was given.

The state travels through a real round checkpoint (``save_checkpoint``/``load_latest``),
so what a strategy returns must survive JSON and ``.npz`` with nothing pickled.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedsilo.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from fedsilo.clientapp import ClientApp, ClientAppClient, node_context
from fedsilo.common.parameter import parameters_to_ndarrays
from fedsilo.common.typing import Parameters
from fedsilo.server.checkpoint import RoundCheckpoint, load_latest, save_checkpoint
from fedsilo.server.client_manager import SimpleClientManager
from fedsilo.server.history import History
from fedsilo.serverapp import ProxyGrid
from fedsilo.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedXgbCyclic,
    Result,
    Strategy,
)
from fedsilo.simulation import InProcessClientProxy

ROUNDS, STOP_AFTER = 5, 2

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Node p moves every weight toward p + 1 by half, from a seeded jitter of its own."""
    p = int(context.node_config["partition-id"])
    rng = np.random.default_rng(100 * p + int(msg.content["config"]["server-round"]))
    arrays = [w + 0.5 * (p + 1 - w) + rng.normal(0, 0.1, w.shape)
              for w in msg.content["arrays"].to_numpy_ndarrays()]
    return Message(RecordDict({"arrays": ArrayRecord(arrays),
                               "metrics": MetricRecord({"num-examples": p + 1})}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    w = msg.content["arrays"].to_numpy_ndarrays()[0]
    return Message(RecordDict({"metrics": MetricRecord({"w": float(w.sum()),
                                                        "num-examples": 1})}), reply_to=msg)


class CheckpointingGrid(ProxyGrid):
    """Three in-process nodes; keeps each round in ``directory`` as a deployment would, and
    (``resume``) hands the newest one back to the first ``start()``."""

    def __init__(self, directory: Path, *, stop_after: int | None = None,
                 resume: bool = False) -> None:
        manager = SimpleClientManager()
        for p in range(3):
            manager.register(InProcessClientProxy(str(p), ClientAppClient(
                app, node_context(p + 1, {"partition-id": p, "num-partitions": 3}))))
        super().__init__(manager)
        self.directory, self.stop_after, self.resuming = directory, stop_after, resume

    def on_round_end(self, server_round: int, result: Result, strategy: Strategy) -> None:
        save_checkpoint(self.directory, RoundCheckpoint(
            server_round, Parameters([a.data for a in result.arrays.values()], "numpy.ndarray"),
            History(), type(strategy).__name__,
            {"strategy": strategy.state_dict(),
             "w": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()}}))
        if server_round == self.stop_after:
            raise KeyboardInterrupt  # the run stops here, as a killed process would

    def resume(self, strategy: Strategy) -> tuple[int, Result] | None:
        if not self.resuming:
            return None
        self.resuming = False
        loaded = load_latest(self.directory)
        assert loaded is not None and loaded.strategy_type == type(strategy).__name__
        strategy.load_state_dict(loaded.strategy_state["strategy"])
        arrays = ArrayRecord(parameters_to_ndarrays(loaded.parameters))
        return loaded.server_round, Result(arrays=arrays, evaluate_metrics_clientapp={
            int(r): MetricRecord(m) for r, m in loaded.strategy_state["w"].items()})


# The rules that keep state between rounds, and FedAvg, which keeps none.
STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "FedAvg": lambda: FedAvg(min_available_nodes=3),
    "FedAvgM": lambda: FedAvgM(min_available_nodes=3, server_momentum=0.9),
    "FedAdam": lambda: FedAdam(min_available_nodes=3, eta=0.3, beta_1=0.9, beta_2=0.99),
    "adaptive DP over FedAdam": lambda: DifferentialPrivacyServerSideAdaptiveClipping(
        FedAdam(min_available_nodes=3, eta=0.3, beta_1=0.9, beta_2=0.99),
        noise_multiplier=0.1, num_sampled_clients=3, initial_clipping_norm=0.5, seed=7),
}


def _run(strategy: Strategy, grid: ProxyGrid) -> Result:
    try:
        return strategy.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(4)]),
                              num_rounds=ROUNDS)
    finally:
        grid.close()


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_strategy_resumed_from_its_state_ends_where_the_whole_run_ends(
        tmp_path: Path, name: str) -> None:
    make = STRATEGIES[name]
    whole = _run(make(), CheckpointingGrid(tmp_path / "whole"))
    with pytest.raises(KeyboardInterrupt):
        _run(make(), CheckpointingGrid(tmp_path / "stopped", stop_after=STOP_AFTER))
    shutil.copytree(tmp_path / "stopped", tmp_path / "stopped-copy")
    resumed = _run(make(), CheckpointingGrid(tmp_path / "stopped", resume=True))
    np.testing.assert_allclose(resumed.arrays["0"].numpy(), whole.arrays["0"].numpy(),
                               rtol=1e-12)
    assert sorted(resumed.evaluate_metrics_clientapp) == list(range(1, ROUNDS + 1))
    # Resuming without the state goes elsewhere, except for the rule that keeps none.
    lost = _run(make(), _ResumeWithoutState(tmp_path / "stopped-copy"))
    same = np.allclose(lost.arrays["0"].numpy(), whole.arrays["0"].numpy(), rtol=1e-12)
    assert same == (name == "FedAvg")


class _ResumeWithoutState(CheckpointingGrid):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory, resume=True)

    def on_round_end(self, server_round: int, result: Result, strategy: Strategy) -> None:
        pass  # the checkpoints stay those of the stopped run

    def resume(self, strategy: Strategy) -> tuple[int, Result] | None:
        state = load_latest(self.directory)
        assert state is not None
        self.resuming = False
        return state.server_round, Result(arrays=ArrayRecord(
            parameters_to_ndarrays(state.parameters)))


def test_a_stateless_rule_refuses_state_it_does_not_keep() -> None:
    with pytest.raises(ValueError, match="FedAvg keeps no state"):
        FedAvg().load_state_dict({"m_t": [np.zeros(2)]})


def test_cyclic_turns_survive_a_checkpoint(tmp_path: Path) -> None:
    strategy = FedXgbCyclic()
    strategy.registered_nodes = {7: 1, 3: 2, 11: 3}
    save_checkpoint(tmp_path, RoundCheckpoint(1, Parameters([], "numpy.ndarray"), History(),
                                              "FedXgbCyclic", strategy.state_dict()))
    loaded = load_latest(tmp_path)
    assert loaded is not None
    again = FedXgbCyclic()
    again.load_state_dict(loaded.strategy_state)
    assert again.registered_nodes == {7: 1, 3: 2, 11: 3}
