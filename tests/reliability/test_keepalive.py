"""Long local training keeps its stream; a dropped stream reconnects and rejoins.

Scaled down: keepalive pings every 0.2 s instead of every minute, and a fit that
sleeps 3 s (15 ping intervals without a message) stands for 30 minutes of training.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import FitIns, ReconnectIns, ndarrays_to_parameters
from fedsilo.server.grpc.server import start_grpc_server
from tests.conftest import free_port
from tests.interop.conftest import flwr_1_3_env, flwr_env, flwr_newest_env  # noqa: F401
from tests.interop.flower_envs import FlowerEnv
from tests.interop.harness import ProcessGroup
from tests.reliability import peers
from tests.reliability.peers import (
    Honest,
    RecordingClientManager,
    RecordingStrategy,
    ServerThread,
    expected_fedavg,
    initial,
)
from tests.reliability.tcp_relay import TcpRelay
from tests.reliability.test_large_flower import FLOWER_CLIENT

pytestmark = pytest.mark.timeout(90)

PING = 0.2  # seconds between keepalive pings, client and server
TRAINING = 3.0  # seconds of silence while the client trains


class LongTraining(Honest):
    """Trains for TRAINING seconds without a message; remembers when."""

    def __init__(self, offset: float, n: int) -> None:
        super().__init__(offset, n)
        self.window: tuple[float, float] | None = None

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        started = time.monotonic()
        time.sleep(TRAINING)
        self.window = (started, time.monotonic())
        return super().fit(parameters, config)


def start_client_thread(address: str, client: fl.client.NumPyClient,
                        errors: list[BaseException], **kwargs: Any) -> threading.Thread:
    return peers.start_client_thread(address, client, errors, keepalive_time=PING,
                                     keepalive_timeout=5.0, **kwargs)


def test_a_client_training_through_many_keepalive_intervals_keeps_its_stream() -> None:
    manager = RecordingClientManager()
    server, port = start_grpc_server(client_manager=manager, server_address="127.0.0.1:0",
                                     keepalive_time=PING, keepalive_timeout=5.0)
    relay = TcpRelay(port)
    client = LongTraining(1.0, 5)
    errors: list[BaseException] = []
    try:
        thread = start_client_thread(f"127.0.0.1:{relay.port}", client, errors, max_wait_time=10)
        assert manager.wait_for(1, timeout=20)
        (proxy,) = manager.all().values()
        res = proxy.fit(FitIns(ndarrays_to_parameters(initial()), {}), timeout=TRAINING + 10)
        assert res.num_examples == 5
        assert manager.registered == [proxy.cid]  # one stream throughout: no reconnection
        assert client.window is not None
        begin, end = client.window
        pings = [n for at, n in relay.traffic if begin + 0.1 < at < end - 0.1]
        # Pings (and their acks) crossed the quiet connection while the client trained.
        assert len(pings) >= (TRAINING / PING) / 2, relay.traffic
        proxy.reconnect(ReconnectIns(seconds=None), timeout=10)
        thread.join(10)
    finally:
        relay.close()
        server.stop(None)
    assert not errors


class CutAfterRoundOne(RecordingStrategy):
    """Cuts the relayed client's connection after round 1, then waits for it to come back."""

    def __init__(self, relay: TcpRelay, **kwargs: Any) -> None:
        super().__init__(2, **kwargs)
        self.relay = relay
        self.sampled: dict[int, set[str]] = {}

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        if server_round == 2:
            self.relay.cut()
            before = self.sampled[1]
            deadline = time.monotonic() + 30
            # Wait for the dropped client's new stream (a new id) beside the other one.
            while time.monotonic() < deadline:
                ids = set(client_manager.all())
                if len(ids) == 2 and ids != before:
                    break
                time.sleep(0.05)
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self.sampled[server_round] = {c.cid for c, _ in instructions}
        return instructions


def test_a_dropped_client_reconnects_with_backoff_and_takes_part_in_the_next_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fedsilo.client")
    port = free_port()
    relay = TcpRelay(port)
    direct, relayed = Honest(1.0, 10), Honest(3.0, 30)
    strategy = CutAfterRoundOne(relay)
    server = ServerThread(server_address=f"127.0.0.1:{port}", strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=2, round_timeout=20))
    errors: list[BaseException] = []
    threads = [start_client_thread(f"127.0.0.1:{port}", direct, errors, max_wait_time=30),
               start_client_thread(f"127.0.0.1:{relay.port}", relayed, errors,
                                   max_wait_time=30)]
    try:
        server.join(60)
    finally:
        relay.close()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert relay.accepted >= 2  # the relayed client opened a second connection
    assert strategy.sampled[1] != strategy.sampled[2]
    assert strategy.failures == {1: [], 2: []} and strategy.results == {1: 2, 2: 2}
    assert relayed.fits == 2
    retries = [r.getMessage() for r in caplog.records
               if f":{relay.port} unreachable" in r.getMessage()]
    assert retries and all("retrying in" in m for m in retries)
    for got, want in zip(strategy.aggregated[2], expected_fedavg([direct, relayed], 2),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(150, func_only=True)
def test_the_server_pings_keep_a_quiet_flower_client_stream_open(
    flwr_env: FlowerEnv, tmp_path: Path  # noqa: F811 - the imported fixture
) -> None:
    """Flower clients send no keepalive pings of their own; the server's pings keep their
    quiet connection in use while they train."""
    port = free_port()
    relay = TcpRelay(port)
    strategy = RecordingStrategy(1, initial_parameters=ndarrays_to_parameters([np.zeros(3)]))
    server = ServerThread(server_address=f"127.0.0.1:{port}", strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=1, round_timeout=60),
                          keepalive_time=PING, keepalive_timeout=5.0)
    record = tmp_path / "flower-client.json"
    try:
        with ProcessGroup(tmp_path) as group:
            group.start("flower-client", [
                flwr_env.python, str(FLOWER_CLIENT), "--server-address",
                f"127.0.0.1:{relay.port}", "--max-message", str(2**29), "--record", str(record),
                "--train-seconds", str(TRAINING)], flwr_env.environ())
            try:
                server.join(120)
                codes = group.wait_all(timeout=60)
            except Exception as exc:
                raise AssertionError(f"{exc}\n{group.report()}") from exc
            report = group.report()
    finally:
        relay.close()
    assert codes == {"flower-client": 0}, report
    assert strategy.results == {1: 1} and strategy.failures == {1: []}
    assert relay.accepted == 1  # one connection throughout
    (window,) = json.loads(record.read_text())["windows"]
    # The relay's clock is monotonic, the client's is wall time: compare durations only.
    quiet = [at for at, _ in relay.traffic]
    gaps = [b - a for a, b in zip(quiet, quiet[1:], strict=False)]
    assert window[1] - window[0] >= TRAINING
    assert max(gaps) < TRAINING / 2, gaps  # traffic never stopped for long while it trained
