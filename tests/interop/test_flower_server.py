"""fedsilo's clients train with a Flower server.

``flwr.server.start_server`` runs in a process of a Flower venv; fedsilo clients, started with
``fedsilo.client.start_numpy_client``, run in processes of the interpreter running the tests.
The clients are deterministic, so every figure the Flower server records can be predicted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import free_port
from tests.interop.flower_envs import FlowerEnv
from tests.interop.harness import (
    FEDSILO_CLIENT,
    FLWR_SERVER,
    ProcessGroup,
    accepts_connections,
    as_float32,
    fedsilo_environ,
    wait_until,
)

# (offset added by fit, number of examples)
CLIENTS = ((0.5, 10), (-0.25, 30), (1.0, 60))
SHAPES = [(3, 2), (2,)]
NUM_ROUNDS = 3


def expected_global_models() -> list[list[np.ndarray]]:
    """The global model after each round 0..NUM_ROUNDS, by FedAvg's definition."""
    models = [[np.zeros(s) for s in SHAPES]]
    total = sum(n for _, n in CLIENTS)
    for _ in range(NUM_ROUNDS):
        models.append([sum(n * (layer + offset) for offset, n in CLIENTS) / total
                       for layer in models[-1]])
    return models


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(150, func_only=True)
def test_fedsilo_clients_complete_a_federation_with_a_flower_server(
    flwr_env: FlowerEnv, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    out = tmp_path / "flwr-server.json"
    with ProcessGroup(tmp_path) as group:
        server = group.start("flwr-server", [
            flwr_env.python, str(FLWR_SERVER), "--server-address", address,
            "--num-clients", str(len(CLIENTS)), "--num-rounds", str(NUM_ROUNDS),
            "--out", str(out),
        ], flwr_env.environ())
        try:
            wait_until(lambda: accepts_connections(port) or not server.running(), 60,
                       f"the Flower server listening on {address}")
            records = [tmp_path / f"fedsilo-client-{i}.json" for i in range(len(CLIENTS))]
            for i, ((offset, n), record) in enumerate(zip(CLIENTS, records, strict=True)):
                group.start(f"fedsilo-client-{i}", [
                    sys.executable, str(FEDSILO_CLIENT), "--server-address", address,
                    "--offset", str(offset), "--num-examples", str(n), "--record", str(record),
                ], fedsilo_environ())
            exit_codes = group.wait_all(timeout=90)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{group.report()}") from exc
        report = group.report()

    assert set(exit_codes.values()) == {0}, report
    run = json.loads(out.read_text())
    assert run["flwr_version"] == flwr_env.flwr_version
    assert all(not failures for failures in run["failures"].values()), run["failures"]
    history = run["history"]
    rounds = list(range(1, NUM_ROUNDS + 1))
    models = expected_global_models()

    # Flower's FedAvg aggregated the fedsilo clients' models to what FedAvg predicts.
    assert sorted(map(int, run["aggregated"])) == rounds
    for server_round in rounds:
        aggregated = run["aggregated"][str(server_round)]
        for got, want in zip(aggregated, models[server_round], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    assert [r for r, _ in history["losses_centralized"]] == [0, *rounds]
    for (server_round, loss) in history["losses_centralized"]:
        assert loss == pytest.approx(sum(float(a.sum()) for a in models[server_round]))

    # Every client got fit and evaluate in each round, with the server's config and models.
    seen = [json.loads(record.read_text()) for record in records]
    for instructions in seen:
        assert [(i["kind"], i["config"]) for i in instructions] == [
            (kind, {"server_round": r}) for r in rounds for kind in ("fit", "evaluate")]
        for instruction in instructions:
            r = instruction["config"]["server_round"]
            model = models[r - 1] if instruction["kind"] == "fit" else models[r]
            for got, want in zip(instruction["parameters"], model, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-12)

    # The distributed losses are the example-weighted means of what the clients reported.
    assert [r for r, _ in history["losses_distributed"]] == rounds
    for server_round, loss in history["losses_distributed"]:
        reported: list[dict[str, Any]] = [
            i for instructions in seen for i in instructions
            if i["kind"] == "evaluate" and i["config"]["server_round"] == server_round]
        total = sum(i["num_examples"] for i in reported)
        expected = sum(i["num_examples"] * as_float32(i["loss"]) for i in reported) / total
        assert loss == pytest.approx(expected, rel=1e-9)
        predicted = sum(n * (float(models[server_round][0].mean()) + offset**2)
                        for offset, n in CLIENTS) / total
        assert loss == pytest.approx(predicted, rel=1e-6)
