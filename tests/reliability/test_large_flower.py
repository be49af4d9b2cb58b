"""Chunking stays between fedsilo peers: a Flower client beside a fedsilo one never sees it.

A fedsilo server with a 4 MiB message limit serves a fedsilo client and a Flower client
(flwr 1.3.0 and the newest flwr). With a small model both train; with a 20 MB model the
fedsilo client gets it in chunks and trains, the Flower client is a failure whose reason
names the limit, never sent a frame it could not read, and leaves cleanly at the end.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import ClientFailure, ndarrays_to_parameters
from tests.conftest import free_port
from tests.interop.conftest import flwr_1_3_env, flwr_env, flwr_newest_env  # noqa: F401
from tests.interop.flower_envs import FlowerEnv
from tests.interop.harness import ProcessGroup
from tests.reliability.peers import RecordingStrategy, ServerThread
from tests.reliability.test_large import LIMIT, Trainer, big_model

HERE = Path(__file__).resolve().parent
FLOWER_CLIENT = HERE / "flower_plain_client.py"


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(150, func_only=True)
@pytest.mark.parametrize("size", ["small", "over the limit"])
def test_a_flower_client_beside_a_chunking_fedsilo_client(
    flwr_env: FlowerEnv, size: str, tmp_path: Path  # noqa: F811 - the imported fixture
) -> None:
    model = [np.zeros(3)] if size == "small" else big_model()
    address = f"127.0.0.1:{free_port()}"
    strategy = RecordingStrategy(2, initial_parameters=ndarrays_to_parameters(model))
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=1, round_timeout=60),
                          grpc_max_message_length=LIMIT)
    trainer = Trainer(2.0, 10)
    fedsilo_client = threading.Thread(
        target=fl.client.start_numpy_client, daemon=True,
        kwargs={"server_address": address, "client": trainer,
                "grpc_max_message_length": LIMIT, "max_wait_time": 60})
    record = tmp_path / "flower-client.json"
    with ProcessGroup(tmp_path) as group:
        group.start("flower-client", [
            flwr_env.python, str(FLOWER_CLIENT), "--server-address", address,
            "--max-message", str(LIMIT), "--record", str(record)], flwr_env.environ())
        fedsilo_client.start()
        try:
            server.join(120)
            codes = group.wait_all(timeout=60)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{group.report()}") from exc
        report = group.report()
    assert codes == {"flower-client": 0}, report
    fits = json.loads(record.read_text())["fits"]
    for got, want in zip(trainer.received[0], model, strict=True):
        np.testing.assert_array_equal(got, want)
    if size == "small":
        assert fits == [[3]] and strategy.failures[1] == [] and strategy.results[1] == 2
        np.testing.assert_array_equal(strategy.aggregated[1][0], np.full(3, 1.5))
    else:
        assert fits == []
        (failure,) = strategy.failures[1]
        assert isinstance(failure, ClientFailure)
        assert f"over the message limit of {LIMIT} bytes" in str(failure)
        assert "start_server(grpc_max_message_length=...)" in str(failure)
        assert strategy.results[1] == 1
        for got, want in zip(strategy.aggregated[1], model, strict=True):
            np.testing.assert_allclose(got, want + 2.0, rtol=1e-15, atol=1e-15)
