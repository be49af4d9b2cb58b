"""Flower's clients train with a fedsilo server.

The seed's client script runs under flwr 1.3.0 and under the newest flwr, three processes at a
time, against ``fedsilo.server.start_server`` over real gRPC on 127.0.0.1. Each runs twice:
with a FedAvg subclass that records what it receives in ``aggregate_fit`` (fedsilo then hands
it all results at once), and with plain FedAvg (fedsilo folds results in as they arrive).
What the clients returned comes from their own records.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import fedsilo as fl
from tests.conftest import free_port
from tests.interop import seed_utils
from tests.interop.flower_envs import FlowerEnv
from tests.interop.harness import (
    SEED_CLIENT,
    FedsiloServerThread,
    ProcessGroup,
    RecordingFedAvg,
    SeedClientRecord,
    as_float32,
    weighted_mean,
)

# (data seed, training examples): unequal sizes, so the weighted mean is not the plain mean.
CLIENTS = ((11, 60), (22, 100), (33, 150))
SERVER_DATA_SEED = 99
NUM_ROUNDS = 3


def fit_round(server_round: int) -> dict[str, fl.common.Scalar]:
    return {"server_round": server_round}


def server_evaluate_fn(seen: dict[int, list[np.ndarray]]) -> Any:
    """Log loss of the global model on the server's own test set; remembers what it saw."""
    (_, _), (x_test, y_test) = seed_utils.load_data(SERVER_DATA_SEED)
    model = LogisticRegression()
    seed_utils.set_initial_params(model)

    def evaluate(server_round: int, parameters: list[np.ndarray],
                 config: dict[str, Any]) -> tuple[float, dict[str, fl.common.Scalar]]:
        seen[server_round] = [p.copy() for p in parameters]
        seed_utils.set_model_params(model, parameters)
        loss = log_loss(y_test, model.predict_proba(x_test))
        return float(loss), {"accuracy": float(model.score(x_test, y_test))}

    return evaluate


def start_seed_clients(group: ProcessGroup, env: FlowerEnv, address: str,
                       record_root: Path) -> dict[int, Path]:
    """One seed-client process per entry of CLIENTS; returns each one's record directory."""
    record_dirs = {}
    for seed, n_train in CLIENTS:
        record_dirs[seed] = record_root / f"client-{seed}"
        group.start(f"seed-client-{seed}", [
            env.python, str(SEED_CLIENT), "--server-address", address, "--seed", str(seed),
            "--n-train", str(n_train), "--record-dir", str(record_dirs[seed]),
        ], env.environ())
    return record_dirs


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(150, func_only=True)
@pytest.mark.parametrize("recording", [True, False], ids=["recording-subclass", "plain-FedAvg"])
def test_seed_clients_under_flower_complete_a_federation_with_a_fedsilo_server(
    flwr_env: FlowerEnv, recording: bool, tmp_path: Path
) -> None:
    port = free_port()
    evaluated: dict[int, list[np.ndarray]] = {}
    strategy_class = RecordingFedAvg if recording else fl.server.strategy.FedAvg
    strategy = strategy_class(
        min_fit_clients=len(CLIENTS), min_evaluate_clients=len(CLIENTS),
        min_available_clients=len(CLIENTS), evaluate_fn=server_evaluate_fn(evaluated),
        on_fit_config_fn=fit_round, on_evaluate_config_fn=fit_round,
    )
    server = FedsiloServerThread(
        server_address=f"127.0.0.1:{port}", strategy=strategy,
        config=fl.server.ServerConfig(num_rounds=NUM_ROUNDS, round_timeout=60),
        client_manager=fl.server.SimpleClientManager(wait_timeout=60),
    )
    with ProcessGroup(tmp_path) as group:
        server.start(port)
        record_dirs = start_seed_clients(group, flwr_env, f"127.0.0.1:{port}", tmp_path)
        try:
            history = server.join(timeout=100)
            exit_codes = group.wait_all(timeout=30)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{group.report()}") from exc
        report = group.report()

    assert set(exit_codes.values()) == {0}, report
    rounds = list(range(1, NUM_ROUNDS + 1))
    assert [r for r, _ in history.losses_distributed] == rounds, history
    assert [r for r, _ in history.losses_centralized] == [0, *rounds], history

    records = {seed: SeedClientRecord.load(path) for seed, path in record_dirs.items()}
    for seed, record in records.items():
        # The config functions' round numbers reached every Flower client in every round.
        assert record.fit_configs == {r: {"server_round": r} for r in rounds}, seed
        assert record.evaluate_configs == {r: {"server_round": r} for r in rounds}, seed

    if isinstance(strategy, RecordingFedAvg):
        assert all(not failures for failures in strategy.failures.values()), strategy.failures
        for server_round in rounds:
            # The server decoded exactly the arrays each Flower client sent.
            sent = sorted((records[seed].fits[server_round] for seed, _ in CLIENTS),
                          key=lambda fit: fit[1])
            received = sorted(strategy.received[server_round], key=lambda fit: fit[1])
            assert [n for _, n in received] == [n for _, n in sent]
            for (got, _), (want, _) in zip(received, sent, strict=True):
                for got_layer, want_layer in zip(got, want, strict=True):
                    np.testing.assert_array_equal(got_layer, want_layer)
            for got_layer, want_layer in zip(evaluated[server_round],
                                             strategy.aggregated[server_round], strict=True):
                np.testing.assert_array_equal(got_layer, want_layer)

    for server_round in rounds:
        # The distributed loss is the example-weighted mean of the losses the clients
        # reported (each one passes the wire's 32-bit float field).
        reported = [records[seed].evaluations[server_round] for seed, _ in CLIENTS]
        expected_loss = (sum(n * as_float32(loss) for loss, n in reported)
                         / sum(n for _, n in reported))
        assert dict(history.losses_distributed)[server_round] == pytest.approx(
            expected_loss, rel=1e-9)

    # Each round's global model (as the evaluate_fn saw it) is the example-weighted mean of
    # the models the clients returned in that round; the weights matter.
    for server_round in rounds:
        returned = [records[seed].fits[server_round] for seed, _ in CLIENTS]
        expected = weighted_mean(returned)
        unweighted = weighted_mean([(layers, 1) for layers, _ in returned])
        assert not all(np.allclose(e, u) for e, u in zip(expected, unweighted, strict=True))
        for got, want in zip(evaluated[server_round], expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)

    # Round 0 evaluated a client's zero-initialised model (p = 0.5 everywhere); training helped.
    centralized = dict(history.losses_centralized)
    assert centralized[0] == pytest.approx(math.log(2), rel=1e-12)
    assert centralized[NUM_ROUNDS] < centralized[0]
