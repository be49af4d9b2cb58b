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
from fedsilo.deploy.sandbox import lay_out_federation
from fedsilo.deploy.server_app import load_flower_server_app
from fedsilo.serverapp import ServerApp
from tests.conftest import free_port
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


@pytest.mark.slow
def test_a_failed_flower_app_run_is_not_resumed_but_started_again(tmp_path: Path) -> None:
    toml = _toml(tmp_path, NUMPY_APP, server="", program="", connect_timeout=5.0)
    command = [sys.executable, "-m", "fedsilo.cli.main", "federate", str(toml)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)  # no agent
    assert first.returncode == 1 and "site1: could not start its job" in first.stderr
    again = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert "a Flower app's run starts over" in " ".join(again.stderr.split())
    assert json.loads((tmp_path / "work" / "run" / "state.json").read_text())["status"] == \
        "failed"
