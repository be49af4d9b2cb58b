"""A ServerApp over gRPC with TLS: ``fedsilo server APP_DIR`` and ``fedsilo client APP_DIR``
processes on 127.0.0.1, as a user starts them, and legacy Flower clients beside them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedsilo.deploy.certs import write_authority, write_server_certificate
from tests.cli.test_run import NUMPY_APP, _fedavg_weight

FEDSILO = str(Path(sys.executable).with_name("fedsilo"))
LEGACY_CLIENT = Path(__file__).resolve().parents[1] / "interop" / "app_checks" / \
    "legacy_numpy_client.py"


def _environ() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _port_of(server: subprocess.Popen[str], seen: list[str]) -> int:
    """The port the server prints once nodes can join (it bound port 0); the lines read
    until then go to ``seen``."""
    assert server.stdout is not None
    for line in server.stdout:
        seen.append(line)
        if line.startswith("serving ") and " on port " in line:
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError(f"the server ended before serving: {''.join(seen)}")


def fedsilo_node(app: Path, partition: int, tls: Path) -> Callable[[str], list[str]]:
    """The command of a ``fedsilo client`` node for ``partition`` of 3."""
    return lambda address: [FEDSILO, "client", str(app), "--server", address,
                            "--root-certificates", str(tls / "ca.pem"), "--node-config",
                            f"partition-id={partition} num-partitions=3"]


def run_federation(app: Path, tmp_path: Path, nodes: list[Callable[[str], list[str]]],
                   rounds: int, node_envs: list[dict[str, str]] | None = None) -> str:
    """Serve ``app`` with TLS in ``tmp_path/server``, start the nodes, wait for all to end;
    return the server's output."""
    tls = tmp_path / "tls"
    if not (tls / "ca.pem").exists():
        write_server_certificate(tls, write_authority(tls, "test"), "server", ("127.0.0.1",))
    workdir = tmp_path / "server"
    workdir.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [FEDSILO, "server", str(app), "--address", "127.0.0.1:0", "--certificates", str(tls),
         "--run-config", f"num-server-rounds={rounds}"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_environ())
    started: list[subprocess.Popen[str]] = []
    seen: list[str] = []
    try:
        address = f"127.0.0.1:{_port_of(server, seen)}"
        for index, node in enumerate(nodes):
            env = node_envs[index] if node_envs else _environ()
            started.append(subprocess.Popen(node(address), cwd=tmp_path, text=True, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        rest, _ = server.communicate(timeout=300)
        log = "".join(seen) + rest
        assert server.returncode == 0, log
        for process in started:
            output, _ = process.communicate(timeout=60)
            assert process.returncode == 0, output
    finally:
        for process in [server, *started]:
            if process.poll() is None:
                process.kill()
                process.wait()
    return log


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_numpy_app_trains_across_processes_over_tls(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    log = run_federation(NUMPY_APP, tmp_path, [fedsilo_node(NUMPY_APP, p, tls)
                                               for p in range(3)], rounds=2)
    assert "ServerApp listening on port" in log and "(TLS)" in log and "round 2/2" in log
    model = np.load(tmp_path / "server" / "final_model.npz")
    assert np.allclose(model["arr_0"], _fedavg_weight(2, 0.5, 3))


@pytest.mark.flwr
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_legacy_flower_clients_join_the_app_server(tmp_path: Path) -> None:
    """Flower 1.3 and the newest Flower, as legacy NumPyClients, are nodes of the app beside a
    fedsilo node: they get the train messages as FitIns (arrays and config) and their
    FitRes come back as replies with num-examples."""
    from tests.interop.conftest import build_or_fail
    from tests.interop.flower_envs import FLWR_1_3, FLWR_NEWEST

    envs = [build_or_fail(FLWR_1_3), build_or_fail(FLWR_NEWEST)]
    tls = tmp_path / "tls"
    nodes = [(lambda address, env=env, p=p: [env.python, str(LEGACY_CLIENT), address, str(p),
                                             str(tls / "ca.pem")])
             for p, env in enumerate(envs)]
    log = run_federation(NUMPY_APP, tmp_path, [*nodes, fedsilo_node(NUMPY_APP, 2, tls)],
                         rounds=2, node_envs=[envs[0].environ(), envs[1].environ(),
                                              _environ()])
    assert "round 2/2" in log
    model = np.load(tmp_path / "server" / "final_model.npz")
    assert np.allclose(model["arr_0"], _fedavg_weight(2, 0.5, 3))


def test_a_node_without_tls_settings_is_refused_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([FEDSILO, "client", str(NUMPY_APP), "--server", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=60, env=_environ())
    assert done.returncode == 2
    assert "--root-certificates" in done.stderr and len(done.stderr.strip().splitlines()) == 1
