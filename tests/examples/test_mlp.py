"""The MLP app's numpy network against its formulas, and ``fedsilo demo --app mlp``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from fedsilo.examples.mlp import APP_DIR
from fedsilo.examples.mlp.data import write_example_data


def _task() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlp_task_under_test", APP_DIR / "task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_full_batch_step_follows_the_numerical_gradient() -> None:
    task = _task()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 5)), rng.integers(0, 3, size=12)
    params = task.initial_parameters(5, 4, 3, seed=1)
    params[1] += 0.1  # non-zero biases, so their gradients are exercised too
    lr = 1e-3
    stepped = task.train(params, X, y, epochs=1, learning_rate=lr, batch_size=len(y), seed=0)

    def loss(flat_params: list[np.ndarray]) -> float:
        return task.loss_and_accuracy(flat_params, X, y)[0]

    for index, array in enumerate(params):
        numeric = np.zeros_like(array)
        for position in np.ndindex(array.shape):
            for sign in (1, -1):
                shifted = [p.copy() for p in params]
                shifted[index][position] += sign * 1e-6
                numeric[position] += sign * loss(shifted) / 2e-6
        np.testing.assert_allclose((params[index] - stepped[index]) / lr, numeric,
                                   rtol=1e-4, atol=1e-6, err_msg=f"array {index}")


def test_probabilities_and_scores() -> None:
    task = _task()
    params = [np.zeros((2, 3)), np.zeros(3), np.zeros((3, 4)), np.array([0.0, 0, 0, np.log(3)])]
    _, proba = task.forward(params, np.ones((2, 2)))
    np.testing.assert_allclose(proba, [[1 / 6, 1 / 6, 1 / 6, 1 / 2]] * 2)
    loss, accuracy = task.loss_and_accuracy(params, np.ones((2, 2)), np.array([3, 0]))
    assert loss == pytest.approx((-np.log(1 / 2) - np.log(1 / 6)) / 2)
    assert accuracy == 0.5


def test_example_data_gives_each_site_its_own_mix(tmp_path: Path) -> None:
    channels = write_example_data(tmp_path, 3, seed=2)
    shares = []
    for channel in channels.values():
        with np.load(channel / "train.npz") as data:
            assert data["X"].shape == (400, 8)
            shares.append(np.bincount(data["y"], minlength=3) / 400)
    assert not np.allclose(shares[0], shares[1])
    with np.load(tmp_path / "server" / "test.npz") as test:
        assert test["X"].shape == (600, 8)


@pytest.mark.slow
def test_the_demo_runs_the_mlp_app_through_site_agents(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "fedsilo.cli.main", "demo", "--app", "mlp",
                           "--rounds", "2", "--output", "work"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "round 2/2" in done.stdout and "final MLP on the server's test set" in done.stdout
    with np.load(tmp_path / "work" / "run" / "final_arrays.npz") as arrays:
        assert [arrays[f"arr_{i}"].shape for i in range(4)] == [(8, 16), (16,), (16, 3), (3,)]
    for site in ("site1", "site2", "site3"):
        assert list((tmp_path / "work" / "sites" / site / "artifacts").rglob("model.tar.gz"))
