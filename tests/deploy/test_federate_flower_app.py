"""``fedsilo federate`` runs a Flower app (a ``pyproject.toml`` naming its ServerApp and
ClientApp): the ServerApp on the federation's TLS server, the ClientApp as each site's job.

The quickstart-numpy app is deterministic, so its final model through three site agents is
checked against ``fedsilo run`` of the same app (three virtual nodes, the same partitions)
and against the FedAvg formula.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsilo.deploy.app_archive import FLOWER_JOB_ENTRY, pack_app
from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.federation_config import load_federation_config
from fedsilo.deploy.run_state import read_run_state
from fedsilo.deploy.sandbox import lay_out_federation
from fedsilo.deploy.server_app import load_flower_server_app
from fedsilo.serverapp import ServerApp
from tests.conftest import free_port
from tests.deploy.conftest import wait_for
from tests.deploy.test_federate_apps import SITES, Federation, federations  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
NUMPY_APP = REPO / "examples" / "quickstart-numpy"
RUN_CONFIG = {"num-server-rounds": 4, "lr": 0.25}  # over the app's own: 3 rounds, lr 0.5


def _fedavg_weight(rounds: int, lr: float, num_nodes: int) -> float:
    """Every weight after ``rounds``: w <- w + lr (t - w), t the example-weighted mean of the
    nodes' targets p + 1 (node p holds 10 (p + 1) examples)."""
    target = sum((p + 1) ** 2 for p in range(num_nodes)) / sum(p + 1 for p in range(num_nodes))
    weight = 0.0
    for _ in range(rounds):
        weight += lr * (target - weight)
    return weight


def _model(directory: Path) -> list[np.ndarray]:
    with np.load(directory / "final_model.npz") as model:
        return [model[f"arr_{i}"] for i in range(len(model.files))]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_quickstart_numpy_through_three_sites_equals_fedsilo_run(
        tmp_path: Path, federations: list[Federation]) -> None:  # noqa: F811
    empty = tmp_path / "no-data"
    empty.mkdir()
    (empty / "README").write_text("the quickstart makes its data from the partition id\n")
    federation = Federation(
        tmp_path / "work", dict.fromkeys(SITES, empty), NUMPY_APP, server="", program="",
        run_config=RUN_CONFIG, connect_timeout=90.0,
        node_configs={name: {"partition-id": i, "num-partitions": len(SITES)}
                      for i, name in enumerate(SITES)})
    federations.append(federation)
    served = tmp_path / "served"
    served.mkdir()
    done = subprocess.run(federation.command("federate", str(federation.toml)), cwd=served,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in SITES:
        (record,) = federation.records(name)
        assert record["status"] == "Completed"
        context = json.loads((tmp_path / "work" / "sites" / name / "jobs" / record["name"]
                              / "context.json").read_text())
        assert context["run_config"] == {"num-server-rounds": 4, "fraction-train": 1.0,
                                         "min-available-nodes": 3, "lr": 0.25}
    summary = json.loads((tmp_path / "work" / "run" / "federation.json").read_text())
    assert summary["app"]["serverapp"] == "quickstart_numpy.server_app:app"
    # What FedAvg.start() reported after each round: the arrays and the nodes' figures.
    with np.load(summary["files"]["arrays"]) as kept:
        for i, got in enumerate(_model(served)):
            np.testing.assert_array_equal(kept[f"arr_{i}"], got)
    history = json.loads((tmp_path / "work" / "run" / "history.json").read_text())
    assert [r for r, _ in history["losses_distributed"]] == [1, 2, 3, 4]
    assert [r for r, _ in history["metrics_distributed_fit"]["train_loss"]] == [1, 2, 3, 4]
    assert "eval_loss" in summary["metrics"]
    status = subprocess.run(federation.command("status", str(federation.toml)),
                            capture_output=True, text=True, timeout=60)
    assert "finished, round 4/4" in status.stdout, status.stdout

    simulated = tmp_path / "simulated"
    simulated.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-m", "fedsilo.cli.main", "run", str(NUMPY_APP), "--run-config",
         " ".join(f"{k}={v}" for k, v in RUN_CONFIG.items())],
        cwd=simulated, capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    federated, reference = _model(served), _model(simulated)
    assert [a.shape for a in federated] == [(2, 3), (4,)]
    for got, want in zip(federated, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_allclose(got, _fedavg_weight(4, 0.25, len(SITES)), rtol=1e-6)


def _toml(tmp_path: Path, app: Path, **layout: Any) -> Path:
    channel = tmp_path / "channel"
    channel.mkdir(parents=True, exist_ok=True)
    return lay_out_federation(tmp_path / "work", {"site1": channel}, app, {"site1": free_port()},
                              **layout)


def test_a_flower_app_directory_needs_no_server_or_program(tmp_path: Path) -> None:
    config = load_federation_config(_toml(tmp_path, NUMPY_APP, server="", program="",
                                          run_config={"lr": 0.1}))
    assert config.app.flower and config.app.program == FLOWER_JOB_ENTRY
    assert config.app.run_config == {"lr": 0.1}
    seed_route = load_federation_config(_toml(tmp_path / "seed", NUMPY_APP, server="m:f",
                                              program=""))
    assert not seed_route.app.flower and seed_route.app.program == "client.py"


def test_a_directory_without_flower_components_still_needs_a_server(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pyproject.toml").write_text('[project]\nname = "plain"\n')
    with pytest.raises(ValidationError, match="server"):
        load_federation_config(_toml(tmp_path, plain, server="", program=""))


def test_a_flower_app_is_packed_with_its_job_entry_and_the_same_digest_each_time() -> None:
    archive = pack_app(NUMPY_APP)
    with tarfile.open(fileobj=io.BytesIO(archive.data)) as tar:
        names = tar.getnames()
        entry = tar.extractfile(FLOWER_JOB_ENTRY)
        assert entry is not None and b"fedsilo.deploy.flower_app_job" in entry.read()
    assert "quickstart_numpy/client_app.py" in names
    assert pack_app(NUMPY_APP).digest == archive.digest


def test_the_serverapp_gets_the_apps_config_with_the_federations_on_top() -> None:
    app, run_config = load_flower_server_app(NUMPY_APP, {"lr": 0.25})
    assert isinstance(app, ServerApp)
    assert run_config == {"num-server-rounds": 3, "fraction-train": 1.0,
                          "min-available-nodes": 3, "lr": 0.25}
    with pytest.raises(ValidationError, match=r"app.config epochs: not in the app's "
                                              r"\[tool.flwr.app.config\]"):
        load_flower_server_app(NUMPY_APP, {"epochs": 3})


# A Flower app outside fedsilo whose strategy keeps state between rounds (FedAvgM's
# momentum) and whose rounds take a while (each train sleeps), so that a kill lands mid-run.
MOMENTUM_APP = {
    "pyproject.toml": """
[project]
name = "momentum-app"
version = "1.0.0"
[tool.flwr.app.components]
serverapp = "momentum_app.server_app:app"
clientapp = "momentum_app.client_app:app"
[tool.flwr.app.config]
num-server-rounds = 20
server-momentum = 0.9
delay = 0.15
""",
    "momentum_app/__init__.py": "",
    "momentum_app/client_app.py": """
import time
import numpy as np
from fedsilo.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from fedsilo.clientapp import ClientApp

app = ClientApp()

@app.train()
def train(msg: Message, context: Context) -> Message:
    time.sleep(float(context.run_config["delay"]))
    p = int(context.node_config["partition-id"])
    return Message(RecordDict({"arrays": ArrayRecord([np.full(3, p + 1.0)]),
                               "metrics": MetricRecord({"num-examples": p + 1})}), reply_to=msg)

@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    w = msg.content["arrays"].to_numpy_ndarrays()[0]
    return Message(RecordDict({"metrics": MetricRecord({"w": float(w[0]), "num-examples": 1})}),
                   reply_to=msg)
""",
    "momentum_app/server_app.py": """
import numpy as np
from fedsilo.app import ArrayRecord, Context
from fedsilo.serverapp import Grid, ServerApp
from fedsilo.serverapp.strategy import FedAvgM

app = ServerApp()

@app.main()
def main(grid: Grid, context: Context) -> None:
    strategy = FedAvgM(min_available_nodes=3, min_train_nodes=3, min_evaluate_nodes=3,
                       server_momentum=float(context.run_config["server-momentum"]))
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(3)]),
                            num_rounds=int(context.run_config["num-server-rounds"]))
    np.save("final_model.npy", result.arrays.to_numpy_ndarrays()[0])
""",
    # The same with Flower's older form: server_fn and a legacy strategy, which evaluates the
    # model on the server too (its distance to the target: the run's figures).
    "momentum_app/legacy_server_app.py": """
import numpy as np
import fedsilo as fl
from fedsilo.serverapp import ServerApp, ServerAppComponents

TARGET = 14 / 6  # the example-weighted mean of the nodes' p + 1

def server_fn(context):
    strategy = fl.server.strategy.FedAvgM(
        min_fit_clients=3, min_evaluate_clients=3, min_available_clients=3,
        server_momentum=float(context.run_config["server-momentum"]),
        initial_parameters=fl.common.ndarrays_to_parameters([np.zeros(3)]),
        evaluate_fn=lambda r, arrays, config: (float(abs(arrays[0][0] - TARGET)),
                                               {"w": float(arrays[0][0])}))
    return ServerAppComponents(strategy=strategy, config=fl.server.ServerConfig(
        num_rounds=int(context.run_config["num-server-rounds"])))

app = ServerApp(server_fn=server_fn)
""",
}


def _fedavgm_weight(rounds: int, momentum: float, num_nodes: int) -> float:
    """FedAvgM's weight after ``rounds`` (server learning rate 1): every round the mean is
    the example-weighted mean t of the nodes' p + 1; v <- m v + (w - t), w <- w - v."""
    target = sum((p + 1) ** 2 for p in range(num_nodes)) / sum(p + 1 for p in range(num_nodes))
    weight, velocity = 0.0, None
    for _ in range(rounds):
        gradient = weight - target
        velocity = gradient if velocity is None else momentum * velocity + gradient
        weight -= velocity
    return weight


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("form", ["main", "server_fn"])
def test_a_killed_flower_app_run_resumes_with_its_strategys_state(
        tmp_path: Path, federations: list[Federation], form: str) -> None:  # noqa: F811
    app = tmp_path / "momentum-app"
    for name, text in MOMENTUM_APP.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text.lstrip())
    if form == "server_fn":
        pyproject = app / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace(
            "momentum_app.server_app:app", "momentum_app.legacy_server_app:app"))
    empty = tmp_path / "no-data"
    empty.mkdir()
    (empty / "README").write_text("the nodes need no data\n")
    federation = Federation(
        tmp_path / "work", dict.fromkeys(SITES, empty), app, server="", program="",
        connect_timeout=90.0,
        node_configs={name: {"partition-id": i} for i, name in enumerate(SITES)})
    federations.append(federation)
    run = tmp_path / "work" / "run"
    served = tmp_path / "served"
    served.mkdir()
    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(federation.command("federate", str(federation.toml)),
                                 cwd=served, stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def mid_run() -> bool:
            if first.poll() is not None:
                raise AssertionError((tmp_path / "first.log").read_text()[-3000:])
            try:
                return 3 <= int(read_run_state(run).get("round", 0))
            except (LookupError, ValueError):
                return False
        wait_for(mid_run, 180, "round 3 of the first run")
        first.send_signal(signal.SIGKILL)  # no clean-up: the jobs keep running
    finally:
        first.wait(30)
    state = read_run_state(run)
    assert state["status"] == "running" and 3 <= state["round"] < 20
    jobs = {name: job["name"] for name, job in state["jobs"].items()}

    done = subprocess.run(federation.command("federate", str(federation.toml), "--resume"),
                          cwd=served, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # It goes on after the last round checkpointed: the rounds before come back from it.
    assert "round 1/20:" not in done.stdout and "round 20/20:" in done.stdout, done.stdout
    for name in SITES:  # reattached: one job per site for the whole run
        (record,) = federation.records(name)
        assert record["name"] == jobs[name] and record["status"] == "Completed"
    want = _fedavgm_weight(20, 0.9, len(SITES))  # momentum lost at the kill would miss it
    with np.load(run / "final_arrays.npz") as kept:
        np.testing.assert_allclose(kept["arr_0"], want, rtol=1e-9)
    history = json.loads((run / "history.json").read_text())
    if form == "main":
        np.testing.assert_allclose(np.load(served / "final_model.npy"), want, rtol=1e-9)
        evaluated = history["metrics_distributed"]["w"]  # rounds before the kill come back
        assert [r for r, _ in evaluated] == list(range(1, 21))
    else:  # the server's own evaluation, from round 0, shown live as the rounds went
        evaluated = history["metrics_centralized"]["w"]
        assert [r for r, _ in evaluated] == list(range(21))
        assert "round 20/20: loss" in done.stdout
    assert evaluated[3 if form == "server_fn" else 2][1] == pytest.approx(
        _fedavgm_weight(3, 0.9, len(SITES)))
    assert read_run_state(run)["status"] == "finished"
