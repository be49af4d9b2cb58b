"""``fedsilo federate`` runs any app: the numpy MLP, an app in a directory of its own, refusals,
and a run whose orchestrator is killed and resumed.

Every run goes through three site agents (separate processes, TLS, real jobs). The MLP is
deterministic, so its final arrays are checked against the same federation run in this
process with no sites (clients in threads, plain gRPC), and the resumed run against both.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.deploy.app_approval import sign_app, trust_signer
from fedsilo.deploy.app_archive import pack_app
from fedsilo.deploy.identity import generate_signing_key
from fedsilo.deploy.run_state import read_run_state
from fedsilo.deploy.sandbox import SiteAgentProcess, lay_out_federation
from fedsilo.deploy.server_app import ServerContext, load_server_app
from fedsilo.deploy.site import SiteLayout
from fedsilo.examples.mlp import APP_DIR as MLP_APP
from fedsilo.examples.mlp.data import write_example_data
from tests.conftest import LocalFederation, free_port
from tests.deploy.conftest import wait_for

pytestmark = pytest.mark.slow

SITES = ("site1", "site2", "site3")
MLP_ROUNDS = 6
MLP_CONFIG = {"num-server-rounds": MLP_ROUNDS, "learning-rate": 0.05, "local-epochs": 3,
              "batch-size": 16, "seed": 7}
# The run killed mid-way: a round lasts a few milliseconds with MLP_CONFIG, so several pass
# between seeing round 2 and the kill landing; with many longer rounds the kill always
# lands far from the last one.
LONG_ROUNDS = 40
LONG_CONFIG = {**MLP_CONFIG, "num-server-rounds": LONG_ROUNDS, "local-epochs": 10}


@pytest.fixture(scope="module")
def mlp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mlp-data")
    write_example_data(root, len(SITES), seed=5)
    return root


class Federation:
    """A laid-out federation with its agents running; ``federate`` runs the CLI on it."""

    def __init__(self, work: Path, channels: dict[str, Path], app: Path, **layout: Any) -> None:
        ports = {name: free_port() for name in channels}
        self.work = work
        self.toml = lay_out_federation(work, channels, app, ports, **layout)
        self.agents = [SiteAgentProcess(SiteLayout(work / "sites" / name), ports[name],
                                        work / f"agent-{name}.log") for name in channels]
        for agent in self.agents:
            agent.start()

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fedsilo.cli.main", *args]

    def federate(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("federate", str(self.toml), *args),
                              capture_output=True, text=True, timeout=300)

    def records(self, site: str) -> list[dict[str, Any]]:
        return [json.loads(p.read_text())
                for p in sorted((self.work / "sites" / site / "jobs").glob("*/record.json"))]

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()


@pytest.fixture
def federations() -> Iterator[list[Federation]]:
    made: list[Federation] = []
    yield made
    for federation in made:
        federation.stop()


def _mlp_federation(work: Path, data: Path, made: list[Federation],
                    config: dict[str, Any] = MLP_CONFIG) -> Federation:
    federation = Federation(work, {name: data / name for name in SITES}, MLP_APP,
                            server_data=data / "server", run_config=config,
                            connect_timeout=90.0)
    made.append(federation)
    return federation


def _final_arrays(work: Path) -> list[np.ndarray]:
    with np.load(work / "run" / "final_arrays.npz") as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def _mlp_in_this_process(data: Path, run_config: dict[str, Any] = MLP_CONFIG) -> list[np.ndarray]:
    """The same app with no sites: its server function, its clients in threads."""
    context = ServerContext("direct", dict(run_config), {"data-dir": str(data / "server"),
                                                         "min-sites": len(SITES)})
    strategy, config = load_server_app(MLP_APP, "server:server_fn", context)
    sys.path.insert(0, str(MLP_APP))
    try:
        client_module = importlib.import_module("client")
        task = importlib.import_module("task")
        federation = LocalFederation()
        for name in SITES:
            X, y = task.load_split(data / name / "train.npz")
            federation.start_client(client_module.MLPClient(X, y, dict(run_config), name))
        server = fl.server.Server(client_manager=fl.server.SimpleClientManager(),
                                  strategy=strategy)
        fl.server.start_server(server_address=federation.address, server=server,
                               config=fl.server.ServerConfig(num_rounds=config.num_rounds,
                                                             round_timeout=30))
        federation.join_clients()
    finally:
        sys.path.remove(str(MLP_APP))
        for name in ("client", "task", "server"):
            sys.modules.pop(name, None)
    return fl.common.parameters_to_ndarrays(server.parameters)


def test_the_mlp_app_through_three_sites_equals_the_run_without_sites(
        tmp_path: Path, mlp_data: Path, federations: list[Federation]) -> None:
    federation = _mlp_federation(tmp_path, mlp_data, federations)
    done = federation.federate()
    assert done.returncode == 0, done.stdout + done.stderr
    arrays = _final_arrays(tmp_path)
    assert [a.shape for a in arrays] == [(8, 16), (16,), (16, 3), (3,)]
    for name in SITES:
        (record,) = federation.records(name)
        assert record["status"] == "Completed"
        artifact = next((tmp_path / "sites" / name / "artifacts").rglob("model.tar.gz"))
        with tarfile.open(artifact) as tar:
            assert tar.getnames() == ["mlp.npz"]
            tar.extractall(tmp_path / "unpacked" / name, filter="data")
        with np.load(tmp_path / "unpacked" / name / "mlp.npz") as site_arrays:
            assert len(site_arrays.files) == 4
    summary = json.loads((tmp_path / "run" / "federation.json").read_text())
    assert summary["metrics"]["accuracy"] > 0.9 and summary["rounds"] == MLP_ROUNDS
    assert summary["app"]["server"] == "server:server_fn"
    for got, want in zip(arrays, _mlp_in_this_process(mlp_data), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)


MEAN_CLIENT = """
import argparse, os, pathlib
import numpy as np
import fedsilo as fl

class MeanClient(fl.client.NumPyClient):
    def __init__(self, values):
        self.values = values
    def get_parameters(self, config):
        return [np.zeros(self.values.shape[1])]
    def fit(self, parameters, config):
        return [self.values.mean(axis=0)], len(self.values), {}
    def evaluate(self, parameters, config):
        return float(((self.values - parameters[0]) ** 2).mean()), len(self.values), {}

parser = argparse.ArgumentParser()
for option in ("--server-address", "--max-wait-time"):
    parser.add_argument(option)
args, _ = parser.parse_known_args()
ca = os.environ["FEDSILO_ROOT_CERTIFICATES"]  # the federation CA, from the site agent
values = np.loadtxt(pathlib.Path(os.environ["SM_CHANNEL_TRAIN"], "values.csv"), delimiter=",",
                    ndmin=2)
identity = os.environ["SM_CHANNEL_IDENTITY"]
fl.client.start_numpy_client(
    server_address=args.server_address, client=MeanClient(values),
    root_certificates=ca.encode(),
    client_certificate=(identity + "/client.pem", identity + "/client.key"),
    max_wait_time=float(args.max_wait_time))
np.save(pathlib.Path(os.environ["SM_MODEL_DIR"], "local_mean.npy"), values.mean(axis=0))
"""
MEAN_SERVER = """
import numpy as np
import fedsilo as fl

def make(context):
    sites = context.node_config["min-sites"]
    start = [np.zeros(int(context.run_config["dim"]))]
    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=sites, min_evaluate_clients=sites, min_available_clients=sites,
        initial_parameters=fl.common.ndarrays_to_parameters(start))
    return strategy, fl.server.ServerConfig(num_rounds=1)
"""


def test_an_app_outside_the_package_federates_unchanged(tmp_path: Path,
                                                        federations: list[Federation]) -> None:
    app = tmp_path / "elsewhere" / "mean-app"
    (app / "logic").mkdir(parents=True)
    (app / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "mean-app"
        version = "1.0.0"
        dependencies = ["fedsilo", "numpy"]
    """))
    (app / "run_site.py").write_text(MEAN_CLIENT)
    (app / "logic" / "__init__.py").write_text("")
    (app / "logic" / "federated_mean.py").write_text(MEAN_SERVER)
    rng = np.random.default_rng(11)
    parts = {name: rng.normal(loc=i, size=(20 + 15 * i, 4)) for i, name in enumerate(SITES)}
    channels = {}
    for name, values in parts.items():
        channels[name] = tmp_path / "data" / name
        channels[name].mkdir(parents=True)
        np.savetxt(channels[name] / "values.csv", values, delimiter=",")
    federation = Federation(tmp_path / "work", channels, app,
                            server="logic.federated_mean:make", program="run_site.py",
                            run_config={"dim": 4})
    federations.append(federation)
    done = federation.federate()
    assert done.returncode == 0, done.stdout + done.stderr
    (mean,) = _final_arrays(tmp_path / "work")
    # FedAvg of the sites' means weighted by their row counts: the mean of all rows.
    np.testing.assert_allclose(mean, np.concatenate(list(parts.values())).mean(axis=0),
                               rtol=1e-12)
    for name in SITES:
        assert list((tmp_path / "work" / "sites" / name / "artifacts").rglob("model.tar.gz"))
        (stored,) = (tmp_path / "work" / "sites" / name / "code" / "apps").glob("*.tar.gz")
        with tarfile.open(stored) as tar:
            assert "logic/federated_mean.py" in tar.getnames()


def test_a_site_that_refuses_the_app_ends_the_run_before_anything_runs(
        tmp_path: Path, mlp_data: Path, federations: list[Federation]) -> None:
    federation = Federation(tmp_path, {"site1": mlp_data / "site1"}, MLP_APP,
                            server_data=mlp_data / "server", run_config=MLP_CONFIG,
                            approve=False)
    federations.append(federation)
    done = federation.federate()
    assert done.returncode == 1
    digest = json.loads((tmp_path / "run" / "state.json").read_text())["app"]["digest"]
    assert f"site1: could not start its job: site site1: app {digest} is not approved at " \
           "site site1" in " ".join(done.stderr.split())
    assert federation.records("site1") == []
    assert read_run_state(tmp_path / "run")["status"] == "failed"


def test_a_site_that_trusts_the_publisher_runs_the_signed_app(
        tmp_path: Path, mlp_data: Path, federations: list[Federation]) -> None:
    federation = Federation(tmp_path, {"site1": mlp_data / "site1"}, MLP_APP,
                            server_data=mlp_data / "server",
                            run_config={**MLP_CONFIG, "num-server-rounds": 1},
                            min_sites=1, approve=False)
    federations.append(federation)
    publisher = generate_signing_key()
    trust_signer(SiteLayout(tmp_path / "sites" / "site1"), publisher.public_key())
    (tmp_path / "app.sig").write_bytes(sign_app(publisher, pack_app(MLP_APP).digest))
    text = federation.toml.read_text()
    federation.toml.write_text(text.replace('program = "client.py"\n',
                                            'program = "client.py"\nsignature = "app.sig"\n'))
    done = federation.federate()
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = federation.records("site1")
    assert record["status"] == "Completed"
    policy = json.loads((tmp_path / "sites" / "site1" / "policy" / "apps.json").read_text())
    assert policy["Approved"] == []  # it ran on the signature alone


def test_an_orchestrator_without_the_upload_permission_cannot_place_code(
        tmp_path: Path, mlp_data: Path, federations: list[Federation]) -> None:
    federation = Federation(tmp_path, {"site1": mlp_data / "site1"}, MLP_APP,
                            server_data=mlp_data / "server", run_config=MLP_CONFIG)
    federations.append(federation)
    site = SiteLayout(tmp_path / "sites" / "site1")
    roles = json.loads(site.roles_path.read_text())
    for policy in roles["Roles"][0]["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        policy["PolicyDocument"]["Statement"] = [s for s in statements
                                                 if s.get("Sid") != "UploadApps"]
    site.roles_path.write_text(json.dumps(roles))
    done = federation.federate()
    assert done.returncode == 1
    assert "not authorized to perform code:PutCode" in " ".join(done.stderr.split())
    assert not (site.code / "apps").exists() and federation.records("site1") == []


def test_a_killed_orchestrator_resumes_to_the_same_result_with_the_same_jobs(
        tmp_path: Path, mlp_data: Path, federations: list[Federation]) -> None:
    federation = _mlp_federation(tmp_path, mlp_data, federations, LONG_CONFIG)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(federation.command("federate", str(federation.toml)),
                                 stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        def mid_run() -> bool:
            if first.poll() is not None:
                raise AssertionError((tmp_path / "first.log").read_text()[-3000:])
            try:
                return 2 <= int(read_run_state(tmp_path / "run").get("round", 0))
            except (LookupError, ValueError):
                return False
        wait_for(mid_run, 120, "round 2 of the first run")
        first.send_signal(signal.SIGKILL)  # no clean-up at all: the jobs keep running
    finally:
        first.wait(30)
    state = read_run_state(tmp_path / "run")
    assert state["status"] == "running" and state["round"] < LONG_ROUNDS
    jobs = {name: job["name"] for name, job in state["jobs"].items()}

    status = subprocess.run(federation.command("status", str(federation.toml)),
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "interrupted" in status.stdout, status.stdout

    started = time.monotonic()
    done = federation.federate("--resume")
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started < 120
    for name in SITES:  # reattached: one job per site for the whole run
        (record,) = federation.records(name)
        assert record["name"] == jobs[name] and record["status"] == "Completed"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r for r, _ in history["losses_centralized"]] == list(range(LONG_ROUNDS + 1))
    expected = _mlp_in_this_process(mlp_data, LONG_CONFIG)
    for got, want in zip(_final_arrays(tmp_path), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)

    status = subprocess.run(federation.command("status", str(federation.toml)),
                            capture_output=True, text=True, timeout=60)
    assert f"finished, round {LONG_ROUNDS}/{LONG_ROUNDS}" in status.stdout, status.stdout
    again = federation.federate("--resume")
    assert again.returncode == 1 and "nothing to resume" in again.stderr
