"""A NumPyClient written for Flower runs unchanged on fedsilo.

Flower hands ``fit`` and ``evaluate`` writable numpy arrays, so client code may update them
in place (``layer += step``). The same client class runs once on flwr and once on fedsilo,
each time against a fedsilo server; both runs must train the global model alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters
from tests.conftest import free_port
from tests.interop.flower_envs import FlowerEnv
from tests.interop.harness import (
    IN_PLACE_CLIENT,
    FedsiloServerThread,
    ProcessGroup,
    RecordingFedAvg,
    fedsilo_environ,
)

STEP = 0.5
NUM_ROUNDS = 2


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize("framework", ["flwr", "fedsilo"])
def test_a_client_that_updates_its_parameters_in_place_trains_as_on_flower(
    flwr_newest_env: FlowerEnv, framework: str, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    strategy = RecordingFedAvg(
        min_fit_clients=1, min_evaluate_clients=1, min_available_clients=1,
        initial_parameters=ndarrays_to_parameters([np.zeros((2, 2)), np.zeros(2)]),
    )
    server = FedsiloServerThread(
        server_address=address, strategy=strategy,
        config=fl.server.ServerConfig(num_rounds=NUM_ROUNDS, round_timeout=30),
        client_manager=fl.server.SimpleClientManager(wait_timeout=60),
    )
    if framework == "flwr":
        python, env = flwr_newest_env.python, flwr_newest_env.environ()
    else:
        python, env = sys.executable, fedsilo_environ()
    with ProcessGroup(tmp_path) as group:
        server.start(port)
        group.start(f"{framework}-client", [python, str(IN_PLACE_CLIENT), "--framework",
                                            framework, "--server-address", address,
                                            "--step", str(STEP)], env)
        try:
            history = server.join(timeout=60)
            exit_codes = group.wait_all(timeout=30)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{group.report()}") from exc
        report = group.report()

    assert exit_codes == {f"{framework}-client": 0}, report
    failures = {r: [str(f) for f in fs] for r, fs in strategy.failures.items() if fs}
    assert not failures, f"the client's fit failed on {framework}: {failures}"
    assert sorted(strategy.aggregated) == list(range(1, NUM_ROUNDS + 1))
    for layer in strategy.aggregated[NUM_ROUNDS]:
        np.testing.assert_allclose(layer, NUM_ROUNDS * STEP)
    assert history.losses_distributed == [(r, r * STEP) for r in range(1, NUM_ROUNDS + 1)]
