"""The quickstart-xgboost app: ``fedsilo run`` and server/client processes over TLS bag the
trees of every node; the first round's bag holds exactly the trees each node grows alone
with plain XGBoost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serverapp.test_network import FEDSILO, fedsilo_node, run_federation

xgb = pytest.importorskip("xgboost")

APP = Path(__file__).resolve().parents[2] / "examples" / "quickstart-xgboost"
NUM_NODES = 3


@pytest.fixture()
def task() -> Iterator[Any]:
    """The app's own task module (data, parameters), imported from the app directory."""
    sys.path.insert(0, str(APP))
    try:
        import quickstart_xgboost.task as module

        yield module
    finally:
        sys.path.remove(str(APP))


def _trees(model_file: Path) -> list[dict[str, Any]]:
    return json.loads(model_file.read_text())["learner"]["gradient_booster"]["model"]["trees"]


def _key(tree: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in tree.items() if k != "id"}, sort_keys=True)


def first_round_trees(task: Any) -> Counter[str]:
    """The tree each node grows from nothing in round 1, by plain XGBoost."""
    config = tomllib.loads((APP / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    flat = {f"params.{k}": v for k, v in config["params"].items()}
    params = task.booster_params(flat)
    grown = Counter[str]()
    for partition in range(NUM_NODES):
        train, _ = task.load_partition(partition, NUM_NODES, config["data"]["seed"],
                                       config["data"]["samples-per-node"])
        booster = xgb.train(params, train, num_boost_round=config["local-epochs"])
        model = json.loads(bytes(booster.save_raw("json")))
        grown.update(_key(t) for t in model["learner"]["gradient_booster"]["model"]["trees"])
    return grown


def _check_model(model_file: Path, rounds: int, task: Any) -> None:
    trees = _trees(model_file)
    assert [t["id"] for t in trees] == list(range(rounds * NUM_NODES))
    assert Counter(_key(t) for t in trees[:NUM_NODES]) == first_round_trees(task)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fedsilo_run_bags_the_trees_of_every_node(tmp_path: Path, task: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([FEDSILO, "run", str(APP), "--run-config", "num-server-rounds=2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "round 2/2" in done.stderr and "FedXgbBagging" in done.stderr
    _check_model(tmp_path / "final_model.json", 2, task)
    assert float(done.stdout.rsplit("final auc", 1)[1]) > 0.85


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_xgboost_app_across_processes_over_tls(tmp_path: Path, task: Any) -> None:
    tls = tmp_path / "tls"
    log = run_federation(APP, tmp_path, [fedsilo_node(APP, p, tls) for p in range(NUM_NODES)],
                         rounds=2)
    assert "(TLS)" in log and "round 2/2" in log
    _check_model(tmp_path / "server" / "final_model.json", 2, task)
