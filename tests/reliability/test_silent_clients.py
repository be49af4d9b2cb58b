"""Streams that join and never answer stop costing rounds once they failed three in a row.

500 raw ``Join`` streams that never send a byte join beside three honest clients whose fit
takes 0.2 s. Every client is sampled each round (``fraction_fit=1.0``): the silent ones time
out in rounds 1 to 3, are then left out of sampling, and rounds 4 and 5 must take less than
twice what the same rounds take with no silent stream at all. A hung client costs a round at
most the round timeout: the evaluation is not even sent to a client whose fit timed out.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import fedsilo as fl
from fedsilo.cli import server as cli_server
from fedsilo.cli.main import app
from fedsilo.common.exceptions import ClientTimeout
from tests.conftest import free_port
from tests.interop.harness import ProcessGroup, wait_until
from tests.reliability.peers import (
    Honest,
    RecordingClientManager,
    RecordingStrategy,
    ServerThread,
    expected_fedavg,
    start_client_thread,
)
from tests.reliability.processes import HERE, environ

pytestmark = pytest.mark.timeout(240)

ROUNDS = 5
TIMEOUT = 2.0
SILENT = 500
FIT_SECONDS = 0.2


class SlowHonest(Honest):
    """An honest client whose training takes ``FIT_SECONDS``: rounds have a known length."""

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        time.sleep(FIT_SECONDS)  # the client's work, not a wait in the test
        return super().fit(parameters, config)


class TimedStrategy(RecordingStrategy):
    """Records when each round's fit starts and its evaluation ends."""

    def __init__(self, n: int) -> None:
        super().__init__(n, fraction_evaluate=1.0)
        self.started: dict[int, float] = {}
        self.ended: dict[int, float] = {}
        self.sampled: dict[int, int] = {}

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        self.started[server_round] = time.monotonic()
        instructions = super().configure_fit(server_round, parameters, client_manager)
        self.sampled[server_round] = len(instructions)
        return instructions

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        self.ended[server_round] = time.monotonic()
        return super().aggregate_evaluate(server_round, results, failures)

    def seconds(self, server_round: int) -> float:
        return self.ended[server_round] - self.started[server_round]


def run_clients(address: str, clients: list[Honest], strategy: TimedStrategy,
                server: ServerThread, later_rounds_need: int) -> None:
    """Run ``clients`` until the server ends; after round 1 (which waits for every client
    the strategy asked for), rounds wait for ``later_rounds_need`` clients only."""
    errors: list[BaseException] = []
    for client in clients:
        start_client_thread(address, client, errors, max_wait_time=30)
    wait_until(lambda: 1 in strategy.started, 120, "round 1 started")
    strategy.min_fit_clients = strategy.min_available_clients = later_rounds_need
    strategy.min_evaluate_clients = later_rounds_need
    server.join(180)
    assert not errors


def run(silent: int, tmp_path: Path) -> TimedStrategy:
    """Five rounds with three honest clients and ``silent`` silent streams."""
    tmp_path.mkdir()
    with ProcessGroup(tmp_path) as group:
        return run_in(group, silent)


def run_in(group: ProcessGroup, silent: int) -> TimedStrategy:
    address = f"127.0.0.1:{free_port()}"
    manager = RecordingClientManager()
    strategy = TimedStrategy(silent + 3)
    server = ServerThread(server_address=address, strategy=strategy, client_manager=manager,
                          config=fl.server.ServerConfig(num_rounds=ROUNDS,
                                                        round_timeout=TIMEOUT))
    if silent:
        group.start("silent", [sys.executable, str(HERE / "silent_swarm.py"), address,
                               str(silent)], environ())
        wait_until(lambda: manager.num_available() >= silent, 120, "the silent streams joined")
    clients = [SlowHonest(1.0, 10), SlowHonest(2.0, 20), SlowHonest(3.0, 30)]
    run_clients(address, clients, strategy, server, later_rounds_need=3)
    for got, want in zip(strategy.aggregated[ROUNDS], expected_fedavg(clients, ROUNDS),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    return strategy


def test_silent_streams_are_left_out_after_three_rounds_and_cost_later_rounds_little(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO, logger="fedsilo.server")
    baseline = run(0, tmp_path / "baseline")
    caplog.clear()
    strategy = run(SILENT, tmp_path / "silent")
    for server_round in (1, 2, 3):
        assert strategy.sampled[server_round] == SILENT + 3
        timeouts = [f for f in strategy.failures[server_round] if isinstance(f, ClientTimeout)]
        assert len(timeouts) == SILENT
        # A round with hung clients lasts the timeout, not twice it: their evaluation is
        # not sent while their fit is unanswered.
        assert strategy.seconds(server_round) < TIMEOUT + 1.5, strategy.seconds(server_round)
    # Rounds 1 and 2 still sample them for evaluation, and fail them at once; after the
    # third failed fit they are left out of round 3's evaluation already.
    assert [len(strategy.evaluate_failures[r]) for r in (1, 2, 3)] == [SILENT, SILENT, 0]
    for server_round in (4, 5):
        assert strategy.sampled[server_round] == 3
        assert strategy.failures[server_round] == []
    # The faster of the two rounds on each side: a round's cost, not a scheduler's hiccup on a
    # loaded machine (a cost the silent streams added would show in both rounds).
    later = min(strategy.seconds(r) for r in (4, 5))
    before = min(baseline.seconds(r) for r in (4, 5))
    print("round seconds with the silent streams",
          [round(strategy.seconds(r), 2) for r in range(1, ROUNDS + 1)], "without",
          [round(baseline.seconds(r), 2) for r in range(1, ROUNDS + 1)])
    assert later < 2 * before, f"rounds 4-5 took {later:.2f} s, {before:.2f} s without them"
    # One summary line per round and phase, not one line per client.
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    summaries = [m for m in lines if f"{SILENT} clients failed: ClientTimeout" in m]
    assert len(summaries) == 5, summaries  # fit of rounds 1-3, evaluate of rounds 1-2
    assert len(lines) < 20, lines[:20]


def test_the_cli_server_has_a_finite_default_round_timeout_and_says_so() -> None:
    assert cli_server.DEFAULTS["round_timeout"] == 600.0
    result = CliRunner().invoke(app, ["server", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "default 600" in result.output


class StallsThreeTimes(SlowHonest):
    """Trains for ``STALL`` seconds (past the round timeout) its first three times, then as
    fast as the others: a client that was stuck and recovers."""

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        if self.fits < 3:
            time.sleep(STALL)  # the client's work, not a wait in the test
        return super().fit(parameters, config)


STALL = 2.0
RECOVERY_ROUNDS = 14


def test_a_client_left_out_is_sampled_again_once_it_answers_the_liveness_probe() -> None:
    address = f"127.0.0.1:{free_port()}"
    strategy = TimedStrategy(3)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=RECOVERY_ROUNDS,
                                                        round_timeout=1.0))
    staller = StallsThreeTimes(5.0, 50)
    run_clients(address, [SlowHonest(1.0, 10), SlowHonest(2.0, 20), staller], strategy, server,
                later_rounds_need=2)
    for server_round in (1, 2, 3):
        (failure,) = strategy.failures[server_round]
        assert isinstance(failure, ClientTimeout)
    left_out = [r for r in range(4, RECOVERY_ROUNDS + 1) if strategy.sampled[r] == 2]
    back = [r for r in range(4, RECOVERY_ROUNDS + 1) if strategy.results.get(r) == 3]
    assert left_out and left_out[0] == 4, strategy.sampled
    # Its third stalled fit ends about STALL seconds into round 3; the probe queued behind it
    # is answered then, and the next round samples it again.
    assert back and back[0] > left_out[-1], (strategy.sampled, strategy.results)
    assert all(strategy.failures[r] == [] for r in back)
    assert staller.fits >= 3 + len(back)


class HangsInEvaluate(SlowHonest):
    """Trains like the others but takes ``HANG`` seconds, past the timeout, to evaluate."""

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        time.sleep(HANG)  # the client's work, not a wait in the test
        return super().evaluate(parameters, config)


HANG = 4.5  # ends well after round 3 timed out, so rounds 2 and 3 fail for sure


def test_a_client_hung_in_evaluate_costs_a_round_at_most_the_timeout() -> None:
    address = f"127.0.0.1:{free_port()}"
    strategy = TimedStrategy(3)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=4, round_timeout=1.0))
    run_clients(address, [SlowHonest(1.0, 10), SlowHonest(2.0, 20), HangsInEvaluate(3.0, 30)],
                strategy, server, later_rounds_need=2)
    seconds = [strategy.seconds(r) for r in range(1, 5)]
    # Round 1: its evaluation times out. Rounds 2 and 3: its fit waits behind that evaluation
    # and times out, and it is not asked to evaluate. Never fit timeout plus evaluate timeout.
    assert all(s < FIT_SECONDS + 1.0 + 1.0 for s in seconds), seconds
    assert len(strategy.evaluate_failures[1]) == 1
    assert [len(strategy.failures[r]) for r in (2, 3)] == [1, 1]
    assert strategy.sampled[4] == 2  # three failed rounds: left out
