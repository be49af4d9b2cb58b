"""Resume inside one process: clients with stable ids, so sampling itself can be compared.

A resumed run must draw the same clients as an uninterrupted one with the same seed, which
holds only if the checkpoint carries the sampling generator's state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.exceptions import CheckpointError
from fedsilo.server import Server, SimpleClientManager
from fedsilo.server.checkpoint import latest_round
from tests.reliability.local_clients import sites

N_CLIENTS, ROUNDS, SEED = 6, 6, 11


class Shift(fl.client.NumPyClient):
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(2)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return [0.5 * p + self.offset for p in parameters], 1 + int(self.offset), {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return float(np.abs(parameters[0] - self.offset).sum()), 1, {}


class SampleLog(fl.server.strategy.FedAvg):
    """FedAvg over 2 of the clients per round, remembering whom it drew."""

    def __init__(self, crash_in_round: int | None = None) -> None:
        super().__init__(fraction_fit=0.3, fraction_evaluate=0.3, min_fit_clients=2,
                         min_evaluate_clients=2, min_available_clients=N_CLIENTS,
                         initial_parameters=ndarrays_to_parameters([np.zeros(2)]),
                         evaluate_fn=lambda r, arrays, config: (float(arrays[0].sum()), {}))
        self.crash_in_round = crash_in_round
        self.drawn: dict[int, list[str]] = {}

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        if server_round == self.crash_in_round:
            raise KeyboardInterrupt("simulated crash at the start of the round")
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self.drawn[server_round] = sorted(c.cid for c, _ in instructions)
        return instructions


def server(strategy: fl.server.strategy.Strategy, checkpoint_dir: Path | None) -> Server:
    manager, _ = sites([Shift(float(i)) for i in range(N_CLIENTS)], seed=SEED)
    return Server(client_manager=manager, strategy=strategy, checkpoint_dir=checkpoint_dir)


def test_a_resumed_run_samples_the_clients_of_an_uninterrupted_one(tmp_path: Path) -> None:
    reference = SampleLog()
    whole = server(reference, None)
    whole_history, _ = whole.fit(ROUNDS, timeout=10)

    crashing = SampleLog(crash_in_round=4)
    with pytest.raises(KeyboardInterrupt):
        server(crashing, tmp_path).fit(ROUNDS, timeout=10)
    assert latest_round(tmp_path) == 3
    resumed_strategy = SampleLog()
    resumed = server(resumed_strategy, tmp_path)
    history, _ = resumed.fit(ROUNDS, timeout=10)

    assert sorted(resumed_strategy.drawn) == [4, 5, 6]
    drawn = {**crashing.drawn, **resumed_strategy.drawn}
    assert drawn == reference.drawn
    # Same seed, same first draws: sampling is reproducible at all.
    fresh = SampleLog()
    server(fresh, None).fit(3, timeout=10)
    assert fresh.drawn[1] == reference.drawn[1]
    np.testing.assert_array_equal(parameters_to_ndarrays(resumed.parameters)[0],
                                  parameters_to_ndarrays(whole.parameters)[0])
    assert history.losses_distributed == whole_history.losses_distributed
    assert history.losses_centralized == whole_history.losses_centralized
    assert [r for r, _ in history.losses_distributed] == list(range(1, ROUNDS + 1))
    # Round 0 (the initial model's evaluation) is recorded once, not again on resume.
    assert [r for r, _ in history.losses_centralized] == list(range(0, ROUNDS + 1))


def test_restarting_the_same_seed_without_a_checkpoint_draws_differently() -> None:
    """Why the generator state is checkpointed: rounds 4..6 of a fresh run differ."""
    reference = SampleLog()
    server(reference, None).fit(ROUNDS, timeout=10)
    restarted = SampleLog()
    server(restarted, None).fit(3, timeout=10)
    assert [restarted.drawn[r] for r in (1, 2, 3)] != [reference.drawn[r] for r in (4, 5, 6)]


def test_a_finished_run_resumed_returns_its_history_without_asking_clients(
    tmp_path: Path,
) -> None:
    first = SampleLog()
    history, _ = server(first, tmp_path).fit(3, timeout=10)
    again = SampleLog()
    resumed = server(again, tmp_path)
    same, _ = resumed.fit(3, timeout=10)
    assert again.drawn == {}
    assert same.losses_distributed == history.losses_distributed
    longer, _ = server(SampleLog(), tmp_path).fit(5, timeout=10)  # extending a finished run
    assert [r for r, _ in longer.losses_distributed] == [1, 2, 3, 4, 5]


def test_resuming_with_another_strategy_is_refused(tmp_path: Path) -> None:
    server(SampleLog(), tmp_path).fit(1, timeout=10)
    plain = fl.server.strategy.FedAvg(min_available_clients=N_CLIENTS)
    with pytest.raises(CheckpointError, match="SampleLog strategy.*FedAvg"):
        server(plain, tmp_path).fit(2, timeout=10)


def test_the_sampling_generator_state_survives_json_exactly() -> None:
    used = SimpleClientManager(seed=3)
    used._random.random()
    used._random.gauss(0.0, 1.0)  # leaves a cached second normal in the state
    other = SimpleClientManager(seed=99)
    other.load_state_dict(json.loads(json.dumps(used.state_dict())))
    assert other._random.getstate() == used._random.getstate()
    assert [other._random.random() for _ in range(3)] == [used._random.random() for _ in range(3)]
