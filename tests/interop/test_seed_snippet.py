"""The seed's server snippet runs unchanged on fedsilo (``import fedsilo as fl``).

``seed_server.py`` holds the snippet verbatim; it runs with the tests' interpreter and serves
the seed's client under flwr 1.3.0, the version the seed pins. The snippet asks for one client
(``min_available_clients = 1``), so one client takes part: with more, how many join each round
would depend on start-up timing. The snippet drops ``start_server``'s History, so the checks
use what the snippet's helpers, its saved model and the client recorded.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.metrics import log_loss

from tests.conftest import free_port
from tests.interop import seed_utils
from tests.interop.flower_envs import FlowerEnv
from tests.interop.harness import (
    SEED_CLIENT,
    SEED_SERVER,
    ProcessGroup,
    SeedClientRecord,
    accepts_connections,
    fedsilo_environ,
    wait_until,
    weighted_mean,
)

SERVER_DATA_SEED = 99
CLIENT_SEED = 7
ROUNDS = [1, 2, 3]


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(150, func_only=True)
def test_the_seed_server_snippet_runs_unchanged_on_fedsilo(
    flwr_1_3_env: FlowerEnv, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    server_record = tmp_path / "server-calls.json"
    client_dir = tmp_path / "client"
    with ProcessGroup(tmp_path) as group:
        server = group.start("seed-server", [
            sys.executable, str(SEED_SERVER), "--server-address", address,
            "--model-dir", str(tmp_path), "--record", str(server_record),
            "--test-seed", str(SERVER_DATA_SEED),
        ], fedsilo_environ())
        try:
            wait_until(lambda: accepts_connections(port) or not server.running(), 60,
                       f"the seed server listening on {address}")
            group.start("seed-client", [
                flwr_1_3_env.python, str(SEED_CLIENT), "--server-address", address,
                "--seed", str(CLIENT_SEED), "--record-dir", str(client_dir),
            ], flwr_1_3_env.environ())
            exit_codes = group.wait_all(timeout=90)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{group.report()}") from exc
        report = group.report()

    assert exit_codes == {"seed-server": 0, "seed-client": 0}, report
    calls = json.loads(server_record.read_text())
    # fit_round configured rounds 1..3; the evaluate_fn saw the initial model and each round's.
    assert calls["fit_round"] == ROUNDS, report
    assert [c["server_round"] for c in calls["evaluate"]] == [0, *ROUNDS], report
    client = SeedClientRecord.load(client_dir)
    assert client.fit_configs == {r: {"server_round": r} for r in ROUNDS}
    assert client.evaluate_configs == {r: {} for r in ROUNDS}  # no on_evaluate_config_fn

    # The model the snippet saves is the FedAvg of the last round: here, the one client's model.
    model = joblib.load(tmp_path / "model.joblib")
    expected = weighted_mean([client.fits[ROUNDS[-1]]])
    np.testing.assert_allclose(model.coef_, expected[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.intercept_, expected[1], rtol=1e-12, atol=1e-14)

    # The evaluate_fn's losses: ln 2 for the zero model, then that of the global model.
    losses = {c["server_round"]: c["loss"] for c in calls["evaluate"]}
    assert losses[0] == pytest.approx(math.log(2), rel=1e-12)
    (_, _), (x_test, y_test) = seed_utils.load_data(SERVER_DATA_SEED)
    assert losses[ROUNDS[-1]] == pytest.approx(log_loss(y_test, model.predict_proba(x_test)))
    assert losses[ROUNDS[-1]] < losses[0]
