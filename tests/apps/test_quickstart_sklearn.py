"""The quickstart-sklearn app: ``fedsilo run`` and server/client processes give the model
that plain scikit-learn gives when the same rounds are run by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.serverapp.test_network import FEDSILO, fedsilo_node, run_federation

APP = Path(__file__).resolve().parents[2] / "examples" / "quickstart-sklearn"


@pytest.fixture()
def task() -> Iterator[object]:
    """The app's own task module (data, model), imported from the app directory."""
    sys.path.insert(0, str(APP))
    try:
        import quickstart_sklearn.task as module

        yield module
    finally:
        sys.path.remove(str(APP))


def reference_model(task: object, rounds: int, num_nodes: int = 3) -> list[np.ndarray]:
    """FedAvg by hand: every node fits from the global model, the new global model is the
    mean weighted by training examples."""
    config = tomllib.loads((APP / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    data = [task.load_partition(p, num_nodes, config["data"]["seed"],  # type: ignore[attr-defined]
                                config["data"]["samples-per-node"]) for p in range(num_nodes)]
    weights = task.initial_parameters()  # type: ignore[attr-defined]
    for _ in range(rounds):
        updates = []
        for x_train, y_train, _, _ in data:
            model = task.new_model(config["penalty"], config["local-epochs"])  # type: ignore
            task.set_parameters(model, [w.copy() for w in weights])  # type: ignore
            task.fit(model, x_train, y_train)  # type: ignore[attr-defined]
            updates.append((task.get_parameters(model), len(x_train)))  # type: ignore
        total = sum(n for _, n in updates)
        weights = [sum(layers[i] * n for layers, n in updates) / total
                   for i in range(len(weights))]
    return weights


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fedsilo_run_matches_federated_averaging_by_hand(tmp_path: Path, task: object) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([FEDSILO, "run", str(APP), "--run-config", "num-server-rounds=2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "final accuracy" in done.stdout
    model = np.load(tmp_path / "final_model.npz")
    expected = reference_model(task, rounds=2)
    assert np.allclose(model["arr_0"], expected[0], rtol=1e-9, atol=1e-12)
    assert np.allclose(model["arr_1"], expected[1], rtol=1e-9, atol=1e-12)
    assert float(done.stdout.rsplit("final accuracy", 1)[1]) > 0.7


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sklearn_app_across_processes_over_tls(tmp_path: Path, task: object) -> None:
    tls = tmp_path / "tls"
    log = run_federation(APP, tmp_path, [fedsilo_node(APP, p, tls) for p in range(3)],
                         rounds=2)
    assert "round 2/2" in log
    model = np.load(tmp_path / "server" / "final_model.npz")
    expected = reference_model(task, rounds=2)
    assert np.allclose(model["arr_0"], expected[0], rtol=1e-9, atol=1e-12)
