"""A server process SIGKILLed in round 3 of 6 resumes from its checkpoint and ends as if never
interrupted. Real processes on 127.0.0.1: the server is ``fedsilo server``, clients reconnect by
their own retry with backoff."""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fedsilo.common import parameters_to_ndarrays
from fedsilo.server.checkpoint import RoundCheckpoint, latest_round, load_latest
from tests.conftest import free_port
from tests.interop.conftest import build_or_fail
from tests.interop.flower_envs import FLWR_NEWEST, FlowerEnv
from tests.interop.harness import Process, ProcessGroup, wait_until
from tests.reliability.momentum_strategy import initial_arrays
from tests.reliability.processes import (
    assert_all_exit_cleanly,
    client_argv,
    environ,
    server_argv,
)

pytestmark = pytest.mark.slow

ROUNDS = 6
CLIENTS = {"a": (1.0, 10), "b": (2.0, 30), "c": (-0.5, 60)}  # name: (offset, examples)
MOMENTUM = 0.5  # MomentumFedAvg's default


def server_options(port: int, checkpoint_dir: Path, *extra: str) -> list[str]:
    return server_argv("--address", f"127.0.0.1:{port}", "--rounds", str(ROUNDS),
                       "--round-timeout", "60", "--seed", "7",
                       "--strategy", "tests.reliability.momentum_strategy:make_strategy",
                       "--checkpoint-dir", str(checkpoint_dir), *extra)


def expected_parameters() -> list[np.ndarray]:
    """The run's result from the formula: weighted mean of 0.5 * p + offset, then momentum."""
    total = sum(n for _, n in CLIENTS.values())
    shift = sum(offset * n for offset, n in CLIENTS.values()) / total
    current, velocity = initial_arrays(), None
    for _ in range(ROUNDS):
        delta = [c - (0.5 * c + shift) for c in current]
        velocity = delta if velocity is None else [MOMENTUM * v + d
                                                   for v, d in zip(velocity, delta, strict=True)]
        current = [c - v for c, v in zip(current, velocity, strict=True)]
    return current


@dataclass
class ClientKind:
    """How to start the scripted clients, and whether they rejoin a restarted server."""

    python: str = sys.executable
    env: dict[str, str] = field(default_factory=environ)
    flags: tuple[str, ...] = ()
    reconnects: bool = True


def run_federation(workdir: Path, kill_in_round_3: bool,
                   kind: ClientKind | None = None) -> RoundCheckpoint:
    kind = kind or ClientKind()
    workdir.mkdir()
    port, checkpoints = free_port(), workdir / "checkpoints"
    address = f"127.0.0.1:{port}"
    # Interrupted run: every client stops inside its round-3 fit until the release file appears.
    block = ("--block-round", "3") if kill_in_round_3 else ()

    def start_clients(group: ProcessGroup, suffix: str) -> list[Process]:
        return [group.start(f"client-{name}{suffix}",
                            [kind.python, *client_argv(address, name, offset, n, workdir,
                                                       *block, *kind.flags)[1:]], kind.env)
                for name, (offset, n) in CLIENTS.items()]

    with ProcessGroup(workdir) as group:
        first = group.start("server", server_options(port, checkpoints), environ())
        clients = start_clients(group, "")
        if kill_in_round_3:
            wait_until(lambda: all((workdir / f"{name}.round3").exists() for name in CLIENTS),
                       120, "every client to be training in round 3")
            assert latest_round(checkpoints) == 2, "round 2 must be checkpointed before round 3"
            os.kill(first.popen.pid, signal.SIGKILL)
            assert first.popen.wait(10) == -signal.SIGKILL
            group.processes.remove(first)
            resumed = group.start("server-resumed", server_options(port, checkpoints,
                                                                   "--resume"), environ())
            (workdir / "release").write_text("go")  # their round-3 replies meet a dead stream
            if not kind.reconnects:  # they end with the stream; their operator restarts them
                for client in clients:
                    assert client.popen.wait(60) != 0, client.output()
                    group.processes.remove(client)
                start_clients(group, "-restarted")
        assert_all_exit_cleanly(group, 120)
        if kill_in_round_3:
            assert "resuming from the checkpoint of round 2" in resumed.output()
    final = load_latest(checkpoints)
    assert final is not None
    return final


def test_server_killed_in_round_3_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    reference = run_federation(tmp_path / "uninterrupted", kill_in_round_3=False)
    resumed = run_federation(tmp_path / "killed", kill_in_round_3=True)

    assert resumed.server_round == reference.server_round == ROUNDS
    history = resumed.history
    rounds = list(range(1, ROUNDS + 1))
    # No gap, no duplicate: every round once, in order, in every record.
    assert [r for r, _ in history.losses_distributed] == rounds
    assert [r for r, _ in history.metrics_distributed_fit["clients"]] == rounds
    # The strategy's counter went on from its checkpointed value instead of restarting at 1.
    assert history.metrics_distributed_fit["rounds_aggregated"] == [(r, r) for r in rounds]
    assert history.metrics_distributed_fit["clients"] == [(r, 3) for r in rounds]
    np.testing.assert_allclose([loss for _, loss in history.losses_distributed],
                               [loss for _, loss in reference.history.losses_distributed],
                               rtol=1e-12)
    got, want = (parameters_to_ndarrays(c.parameters) for c in (resumed, reference))
    for mine, theirs, formula in zip(got, want, expected_parameters(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(mine, formula, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(resumed.strategy_state["velocity"][0],
                               reference.strategy_state["velocity"][0], rtol=1e-12, atol=1e-12)



@pytest.fixture(scope="module")
def flwr_newest() -> FlowerEnv:
    """Built (or found) outside the test's own time limit: a first build takes minutes."""
    return build_or_fail(FLWR_NEWEST)


@pytest.mark.flwr
@pytest.mark.timeout(240, func_only=True)
def test_flower_clients_restarted_after_the_crash_finish_the_resumed_run(
    tmp_path: Path, flwr_newest: FlowerEnv
) -> None:
    """Flower's own clients (newest release) end when the server's stream drops; started again
    by their operator, they join the resumed server, which finishes the run it checkpointed."""
    flower = flwr_newest
    kind = ClientKind(python=flower.python, env=flower.environ(), flags=("--flower",),
                      reconnects=False)
    resumed = run_federation(tmp_path / "flower", kill_in_round_3=True, kind=kind)

    rounds = list(range(1, ROUNDS + 1))
    assert [r for r, _ in resumed.history.losses_distributed] == rounds
    assert resumed.history.metrics_distributed_fit["rounds_aggregated"] == [(r, r) for r in rounds]
    for got, formula in zip(parameters_to_ndarrays(resumed.parameters), expected_parameters(),
                            strict=True):
        np.testing.assert_allclose(got, formula, rtol=1e-12, atol=1e-12)
