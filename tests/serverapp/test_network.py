"""A ServerApp over gRPC with TLS: ``fedsilo server APP_DIR`` and ``fedsilo client APP_DIR``
processes on 127.0.0.1, as a user starts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedsilo.deploy.certs import write_authority, write_server_certificate
from tests.cli.test_run import NUMPY_APP, _fedavg_weight

FEDSILO = str(Path(sys.executable).with_name("fedsilo"))


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


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_numpy_app_trains_across_processes_over_tls(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    write_server_certificate(tls, write_authority(tls, "test"), "server", ("127.0.0.1",))
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = subprocess.Popen(
        [FEDSILO, "server", str(NUMPY_APP), "--address", "127.0.0.1:0", "--certificates",
         str(tls), "--run-config", "num-server-rounds=2"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_environ())
    clients: list[subprocess.Popen[str]] = []
    seen: list[str] = []
    try:
        port = _port_of(server, seen)
        for partition in range(3):
            clients.append(subprocess.Popen(
                [FEDSILO, "client", str(NUMPY_APP), "--server", f"127.0.0.1:{port}",
                 "--root-certificates", str(tls / "ca.pem"), "--node-config",
                 f"partition-id={partition} num-partitions=3"],
                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env=_environ()))
        rest, _ = server.communicate(timeout=240)
        server_log = "".join(seen) + rest
        assert server.returncode == 0, server_log
        for node in clients:
            node_log, _ = node.communicate(timeout=60)
            assert node.returncode == 0, node_log
    finally:
        for process in [server, *clients]:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "ServerApp listening on port" in server_log and "(TLS)" in server_log
    assert "round 2/2" in server_log
    model = np.load(workdir / "final_model.npz")
    assert np.allclose(model["arr_0"], _fedavg_weight(2, 0.5, 3))


def test_a_node_without_tls_settings_is_refused_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([FEDSILO, "client", str(NUMPY_APP), "--server", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=60, env=_environ())
    assert done.returncode == 2
    assert "--root-certificates" in done.stderr and len(done.stderr.strip().splitlines()) == 1


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
    script = Path(__file__).resolve().parents[1] / "interop" / "app_checks" / \
        "legacy_numpy_client.py"
    tls = tmp_path / "tls"
    write_server_certificate(tls, write_authority(tls, "test"), "server", ("127.0.0.1",))
    server = subprocess.Popen(
        [FEDSILO, "server", str(NUMPY_APP), "--address", "127.0.0.1:0", "--certificates",
         str(tls), "--run-config", "num-server-rounds=2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=_environ())
    nodes: list[subprocess.Popen[str]] = []
    seen: list[str] = []
    try:
        address = f"127.0.0.1:{_port_of(server, seen)}"
        for partition, env in enumerate(envs):
            nodes.append(subprocess.Popen(
                [env.python, str(script), address, str(partition), str(tls / "ca.pem")],
                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env=env.environ()))
        nodes.append(subprocess.Popen(
            [FEDSILO, "client", str(NUMPY_APP), "--server", address, "--root-certificates",
             str(tls / "ca.pem"), "--node-config", "partition-id=2 num-partitions=3"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=_environ()))
        rest, _ = server.communicate(timeout=300)
        server_log = "".join(seen) + rest
        assert server.returncode == 0, server_log
        for node in nodes:
            node_log, _ = node.communicate(timeout=60)
            assert node.returncode == 0, node_log
    finally:
        for process in [server, *nodes]:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "round 2/2" in server_log
    model = np.load(tmp_path / "final_model.npz")
    assert np.allclose(model["arr_0"], _fedavg_weight(2, 0.5, 3))
