"""Code written for Flower's legacy API runs on fedsilo with its imports changed.

``legacy_peer.py`` is one program for both frameworks: a custom ``Server`` whose rounds call
``fit_clients`` and ``evaluate_clients``, a strategy that calls ``aggregate``, and NumPy
clients. It runs as a whole under fedsilo (this interpreter) and under the newest Flower (its
own venv), and the two runs must agree. The same program, mixed across frameworks, carries
64-bit integers in configs and metrics between fedsilo and both Flower releases: unsigned
ones above 2**63 - 1 with the newest Flower, which sends them as the protocol's uint64; with
Flower 1.3.0, whose protocol has no uint64 yet (it reads such a Scalar as empty and fails),
the largest signed one, which must still travel as sint64.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import free_port
from tests.interop.flower_envs import FlowerEnv
from tests.interop.harness import (
    HERE,
    ProcessGroup,
    accepts_connections,
    fedsilo_environ,
    wait_until,
)

PEER = HERE / "legacy_peer.py"
# (offset added by fit, number of examples); the offsets and counts are chosen so that
# every mean is exact in float32, in any order of summation.
CLIENTS = ((0.5, 10), (-0.25, 30))
ROUNDS = 2


@dataclass(frozen=True)
class Side:
    """Which framework runs a role: its interpreter, environment and package name."""

    python: str
    environ: Mapping[str, str]
    framework: str


def fedsilo_side() -> Side:
    return Side(sys.executable, fedsilo_environ(), "fedsilo")


def flower_side(env: FlowerEnv) -> Side:
    return Side(env.python, env.environ(), "flwr")


def federate(tmp_path: Path, server: Side, clients: Side, *, custom_server: bool,
             value: int | None = None) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """Run one federation of ``legacy_peer.py`` processes; the server's and clients' records.

    With ``value``, the server sends it in every config and the clients in every fit's
    metrics.
    """
    port = free_port()
    address = f"127.0.0.1:{port}"
    server_out = tmp_path / "server.json"
    client_outs = [tmp_path / f"client-{i}.json" for i in range(len(CLIENTS))]
    argv = [server.python, str(PEER), "server", "--framework", server.framework,
            "--address", address, "--out", str(server_out), "--rounds", str(ROUNDS),
            "--num-clients", str(len(CLIENTS))]
    argv += ["--custom-server"] if custom_server else []
    sent = [] if value is None else ["--send-int", str(value)]
    argv += sent
    with ProcessGroup(tmp_path) as group:
        process = group.start("server", argv, server.environ)
        try:
            wait_until(lambda: accepts_connections(port) or not process.running(), 120,
                       f"the {server.framework} server listening on {address}")
            for i, ((offset, n), out) in enumerate(zip(CLIENTS, client_outs, strict=True)):
                group.start(f"client-{i}", [
                    clients.python, str(PEER), "client", "--framework", clients.framework,
                    "--address", address, "--out", str(out), "--offset", str(offset),
                    "--num-examples", str(n), *sent],
                    clients.environ)
            exit_codes = group.wait_all(timeout=240)
        except Exception as exc:
            raise AssertionError(f"{exc}\n{group.report()}") from exc
        assert set(exit_codes.values()) == {0}, group.report()
    return (json.loads(server_out.read_text()),
            [json.loads(out.read_text()) for out in client_outs])


def expected_models() -> list[list[np.ndarray]]:
    """The global model after rounds 1..ROUNDS: FedAvg of ``model + offset``."""
    total = sum(n for _, n in CLIENTS)
    shift = sum(n * offset for offset, n in CLIENTS) / total
    return [[np.full((3, 2), r * shift), np.full((2,), r * shift)] for r in range(1, ROUNDS + 1)]


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(900, func_only=True)
def test_custom_server_and_aggregate_give_flowers_results(
    flwr_newest_env: FlowerEnv, tmp_path: Path
) -> None:
    runs = {}
    for side in (fedsilo_side(), flower_side(flwr_newest_env)):
        run_dir = tmp_path / side.framework
        run_dir.mkdir()
        runs[side.framework], _ = federate(run_dir, side, side, custom_server=True)
    ours, theirs = runs["fedsilo"], runs["flwr"]
    assert ours["custom_server"] == theirs["custom_server"] == "RoundsByHand"
    assert ours == theirs
    # And both are FedAvg's numbers: the float32 model moves by the weighted mean offset.
    for server_round, model in enumerate(expected_models(), start=1):
        got = ours["aggregated"][str(server_round)]
        assert [dtype for dtype, _ in got] == ["float32", "float32"]
        for (_, layer), want in zip(got, model, strict=True):
            np.testing.assert_array_equal(np.array(layer, dtype=np.float32), want)
    assert all(not failures for failures in ours["failures"].values())
    assert [r for r, _ in ours["losses_distributed"]] == [1, 2]


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(900, func_only=True)
def test_64_bit_ints_in_config_and_metrics_between_fedsilo_and_flower(
    flwr_env: FlowerEnv, tmp_path: Path
) -> None:
    value = 2**63 - 1 if flwr_env.flwr_version == "1.3.0" else 2**63 + 1
    fedsilo, flower = fedsilo_side(), flower_side(flwr_env)
    for server, clients in ((fedsilo, flower), (flower, fedsilo)):
        run_dir = tmp_path / f"{server.framework}-server"
        run_dir.mkdir()
        # Flower 1.3.0 has no fit_clients with a group_id: its side runs its own loop.
        records, seen = federate(run_dir, server, clients, value=value,
                                 custom_server=server.framework == "fedsilo")
        for entries in seen:  # every config reached the clients with the value intact
            assert [entry["config"]["seed"] for entry in entries] == [value] * (2 * ROUNDS)
        assert sorted(records["fit_metrics"]) == ["1", "2"]
        for metrics in records["fit_metrics"].values():  # and every metric the server
            assert [m["big"] for m in metrics] == [value, value]
