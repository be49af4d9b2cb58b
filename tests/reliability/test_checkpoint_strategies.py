"""Every strategy with state resumes exactly: server optimizers' moments, momentum, and the
DP wrappers' accountant, noise generator and clipping norm survive a checkpoint."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.server import History, Server
from fedsilo.server.checkpoint import latest_round
from fedsilo.server.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedYogi,
    Strategy,
)
from tests.reliability.local_clients import sites

N_CLIENTS, ROUNDS, CRASH_AFTER = 4, 6, 3


class Pull(fl.client.NumPyClient):
    """Moves the model towards its own target; deterministic."""

    def __init__(self, i: int) -> None:
        self.target = np.array([0.3 * i, -0.2 * i, 1.0])
        self.n = 5 + i

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(3)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return [p + 0.4 * (self.target - p) for p in parameters], self.n, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return float(np.square(parameters[0] - self.target).sum()), self.n, {}


def sampling() -> dict[str, Any]:
    return {"min_fit_clients": N_CLIENTS, "min_evaluate_clients": N_CLIENTS,
            "min_available_clients": N_CLIENTS,
            "initial_parameters": ndarrays_to_parameters([np.array([0.5, 0.5, 0.5])])}


STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "FedAdam": lambda: FedAdam(eta=0.05, **sampling()),
    "FedYogi": lambda: FedYogi(eta=0.05, **sampling()),
    "FedAdagrad": lambda: FedAdagrad(eta=0.05, **sampling()),
    "FedAvgM": lambda: FedAvgM(server_momentum=0.7, **sampling()),
    "DP fixed clipping": lambda: DifferentialPrivacyServerSideFixedClipping(
        FedAvg(**sampling()), noise_multiplier=0.3, clipping_norm=0.5,
        num_sampled_clients=N_CLIENTS, seed=5),
    "DP adaptive clipping": lambda: DifferentialPrivacyServerSideAdaptiveClipping(
        FedAdam(eta=0.05, **sampling()), noise_multiplier=0.3,
        num_sampled_clients=N_CLIENTS, initial_clipping_norm=0.2, seed=5),
}


class Crash(Exception):
    pass


def run(strategy: Strategy, checkpoint_dir: Path | None,
        crash_after: int | None = None) -> tuple[History, list[np.ndarray]]:
    manager, _ = sites([Pull(i) for i in range(N_CLIENTS)], seed=1)
    server = Server(client_manager=manager, strategy=strategy, checkpoint_dir=checkpoint_dir)

    def crash(server_round: int, history: History) -> None:
        if server_round == crash_after:
            raise Crash  # after the round's checkpoint, before the next round

    server.on_round_end = crash
    history, _ = server.fit(ROUNDS, timeout=10)
    return history, parameters_to_ndarrays(server.parameters)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_stateful_strategy_resumes_to_the_uninterrupted_result(
    name: str, tmp_path: Path
) -> None:
    reference_history, reference = run(STRATEGIES[name](), None)
    checkpoints, stateless = tmp_path / "checkpoints", tmp_path / "stateless"
    with pytest.raises(Crash):
        run(STRATEGIES[name](), checkpoints, crash_after=CRASH_AFTER)
    assert latest_round(checkpoints) == CRASH_AFTER
    shutil.copytree(checkpoints, stateless)
    history, resumed = run(STRATEGIES[name](), checkpoints)

    np.testing.assert_allclose(resumed[0], reference[0], rtol=1e-12, atol=1e-12)
    assert [r for r, _ in history.losses_distributed] == list(range(1, ROUNDS + 1))
    np.testing.assert_allclose([v for _, v in history.losses_distributed],
                               [v for _, v in reference_history.losses_distributed],
                               rtol=1e-12)
    assert history.metrics_distributed_fit.keys() == (
        reference_history.metrics_distributed_fit.keys())
    for key, pairs in reference_history.metrics_distributed_fit.items():
        got = history.metrics_distributed_fit[key]
        assert [r for r, _ in got] == [r for r, _ in pairs], key
        np.testing.assert_allclose([float(v) for _, v in got], [float(v) for _, v in pairs],
                                   rtol=1e-12, err_msg=key)
    # Resumed with the model but not the strategy's state, the run ends elsewhere: the
    # state the checkpoint carried is what made the results equal.
    forgetful = STRATEGIES[name]()
    forgetful.load_state_dict = lambda state: None  # type: ignore[method-assign]
    _, without_state = run(forgetful, stateless)
    assert not np.allclose(without_state[0], reference[0], rtol=1e-9, atol=1e-12)
