"""The Ray backend on a real local Ray, against the local backend and a gRPC federation.

One Ray runtime (two CPUs) serves the whole module and is shut down at its end.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

import fedsilo as fl
import fedsilo.simulation as sim
from fedsilo.common.exceptions import ClientDisconnected, ClientTimeout
from tests.conftest import LocalFederation
from tests.simulation.clients import (
    DyadicClient,
    MisbehavingClient,
    ResourceReportingClient,
    dyadic_client_fn,
    dyadic_strategy,
)
from tests.simulation.recording import RecordingStrategy, round_config

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    options: dict[str, Any] = dict(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(HERE.parents[1])}})
    try:
        ray.init(**options)
    except Exception as exc:  # Ray's own start-up deadline, on a 2-core machine still busy
        if "timed out during startup" not in str(exc):
            raise
        ray.shutdown()
        ray.init(**options)  # once more; a second failure fails the module
    yield
    ray.shutdown()


def simulate(backend: str, num_clients: int, fraction: float, min_clients: int,
             seed: int) -> dict[str, Any]:
    history = sim.start_simulation(
        client_fn=dyadic_client_fn, num_clients=num_clients,
        config=fl.server.ServerConfig(num_rounds=3),
        strategy=dyadic_strategy(fraction, min_clients),
        client_manager=sim.VirtualClientManager(seed=seed), backend=backend,  # type: ignore[arg-type]
        keep_initialised=True)
    return history.to_dict()


def test_same_seed_same_history_on_the_local_backend_and_on_ray() -> None:
    local = simulate("local", 30, fraction=0.2, min_clients=2, seed=4)
    on_ray = simulate("ray", 30, fraction=0.2, min_clients=2, seed=4)
    assert local == on_ray
    assert len(local["losses_distributed"]) == 3 and local["metrics_distributed_fit"]["delta"]
    assert simulate("local", 30, fraction=0.2, min_clients=2, seed=5) != local


def test_same_history_as_a_grpc_federation_of_the_same_clients() -> None:
    federation = LocalFederation()
    for cid in range(6):
        federation.start_client(DyadicClient(str(cid)))
    over_grpc = federation.run_server(dyadic_strategy(1.0, 6), num_rounds=3).to_dict()
    federation.join_clients()
    assert simulate("local", 6, fraction=1.0, min_clients=6, seed=0) == over_grpc
    assert simulate("ray", 6, fraction=1.0, min_clients=6, seed=0) == over_grpc


@pytest.mark.parametrize(("num_cpus", "actors"), [(2.0, 1), (1.0, 2)])
def test_client_resources_set_what_each_client_gets_and_how_many_run_at_once(
        num_cpus: float, actors: int) -> None:
    strategy = RecordingStrategy(min_fit_clients=6, min_available_clients=6,
                                 fraction_evaluate=0.0)
    sim.start_simulation(
        client_fn=lambda cid: ResourceReportingClient(cid), num_clients=6,
        client_resources={"num_cpus": num_cpus}, config=fl.server.ServerConfig(num_rounds=1),
        strategy=strategy, backend="ray", keep_initialised=True)
    results = strategy.fit_metrics[1]
    assert len(results) == 6
    assert {m["cpus"] for m in results.values()} == {num_cpus}
    assert len({m["pid"] for m in results.values()}) == actors
    spans = sorted((m["started"], m["ended"]) for m in results.values())
    overlapping = any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
    assert overlapping == (actors > 1)


def test_crashed_or_overrunning_actor_is_a_failure_and_the_next_round_runs_on_a_fresh_one(
        tmp_path: Path) -> None:
    pid_file = tmp_path / "crashed.pid"
    strategy = RecordingStrategy(min_fit_clients=4, min_available_clients=4,
                                 fraction_evaluate=0.0, on_fit_config_fn=round_config)
    sim.start_simulation(
        client_fn=functools.partial(_misbehaving, crash_cid="2", pid_file=str(pid_file),
                                    sleep_cid="1", sleep_s=60.0, sleep_round=1),
        num_clients=4, config=fl.server.ServerConfig(num_rounds=2, round_timeout=4.0),
        strategy=strategy, backend="ray", keep_initialised=True)
    failures = {f.cid: f for f in strategy.fit_failures[1]}  # type: ignore[attr-defined]
    assert set(failures) == {"1", "2"}
    assert isinstance(failures["2"], ClientDisconnected)
    assert "actor died" in failures["2"].reason
    assert isinstance(failures["1"], ClientTimeout)
    assert "no reply within 4 s; its actor was stopped and replaced" in failures["1"].reason
    assert strategy.fit_failures[2] == [] and len(strategy.fit_metrics[2]) == 4
    crashed_pid = int(pid_file.read_text())
    assert crashed_pid not in {m["pid"] for m in strategy.fit_metrics[2].values()}


def _misbehaving(cid: str, **kwargs: Any) -> fl.client.Client:
    return MisbehavingClient(cid, **kwargs).to_client()


def test_ray_init_address_joins_the_running_cluster() -> None:
    address = ray.get_runtime_context().gcs_address
    done = subprocess.run([sys.executable, str(HERE / "ray_driver.py"), address],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["nodes"] == [ray.get_runtime_context().get_node_id()]
    assert len(report["losses"]) == 1
    assert ray.is_initialized()  # the other driver's shutdown left this cluster running
