"""Federated XGBoost: tree bagging against XGBoost's own predictions and Flower's function,
and the legacy strategies in a real federation over gRPC."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

import fedsilo as fl
from fedsilo.common import Code, EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Status
from fedsilo.server.checkpoint import RoundCheckpoint, load_latest, save_checkpoint
from fedsilo.server.strategy.aggregate import aggregate_xgb_bagging
from tests.conftest import LocalFederation
from tests.interop.flower_envs import FlowerEnv

PARAMS = {"objective": "reg:squarederror", "base_score": 0.0, "max_depth": 3, "eta": 0.5,
          "nthread": 1, "num_parallel_tree": 1}


def silo_data(seed: int, n: int = 200) -> xgb.DMatrix:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = 2.0 * x[:, 0] - x[:, 1] + 0.1 * rng.normal(size=n)
    return xgb.DMatrix(x, label=y)


def boost(data: xgb.DMatrix, rounds: int = 1, start: bytes | None = None) -> xgb.Booster:
    model = None
    if start:
        model = xgb.Booster(params=PARAMS)
        model.load_model(bytearray(start))
    return xgb.train(PARAMS, data, num_boost_round=rounds, xgb_model=model)


def as_json(booster: xgb.Booster) -> bytes:
    return bytes(booster.save_raw("json"))


def loaded(model: bytes) -> xgb.Booster:
    booster = xgb.Booster(params=PARAMS)
    booster.load_model(bytearray(model))
    return booster


def test_bagging_appends_the_clients_trees_and_predicts_their_sum() -> None:
    first, second = boost(silo_data(1)), boost(silo_data(2))
    merged = loaded(aggregate_xgb_bagging(as_json(first), as_json(second)))
    assert merged.num_boosted_rounds() == 2
    probe = silo_data(3)
    # base_score 0: a model's margin is the sum of its trees' outputs.
    np.testing.assert_allclose(
        merged.predict(probe, output_margin=True),
        first.predict(probe, output_margin=True) + second.predict(probe, output_margin=True),
        rtol=1e-5, atol=1e-6)


def test_bagging_starts_from_the_first_model_and_refuses_other_bytes() -> None:
    model = as_json(boost(silo_data(1)))
    assert aggregate_xgb_bagging(None, model) == model
    assert aggregate_xgb_bagging(b"", model) == model
    with pytest.raises(ValueError, match="XGBoost gbtree model in JSON"):
        aggregate_xgb_bagging(model, b"\x93NUMPY not json")


@pytest.mark.flwr
@pytest.mark.timeout(600, func_only=True)
def test_bagging_gives_flowers_model(flwr_newest_env: FlowerEnv, tmp_path: Path) -> None:
    models = [as_json(boost(silo_data(seed), rounds=1)) for seed in (1, 2, 3)]
    for index, model in enumerate(models):
        (tmp_path / f"m{index}.json").write_bytes(model)
    script = ("import sys, pathlib\n"
              "from flwr.server.strategy.fedxgb_bagging import aggregate\n"
              "d = pathlib.Path(sys.argv[1]); g = None\n"
              "for i in range(3): g = aggregate(g, (d / f'm{i}.json').read_bytes())\n"
              "(d / 'flwr.json').write_bytes(g)\n")
    done = subprocess.run([flwr_newest_env.python, "-c", script, str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env=flwr_newest_env.environ())
    assert done.returncode == 0, done.stderr
    ours = None
    for model in models:
        ours = aggregate_xgb_bagging(ours, model)
    assert ours is not None
    assert json.loads(ours) == json.loads((tmp_path / "flwr.json").read_bytes())


class XgbSilo(fl.client.Client):
    """Boosts one round on its own data from the global model; sends back only that
    round's trees (for bagging) or the whole model (for cyclic training), as Flower's
    XGBoost clients do."""

    def __init__(self, seed: int, whole_model: bool = False) -> None:
        self.train, self.whole_model = silo_data(seed), whole_model
        self.fits = 0

    def fit(self, ins: FitIns) -> FitRes:
        start = ins.parameters.tensors[0] if ins.parameters.tensors else None
        booster = boost(self.train, rounds=1, start=start)
        self.fits += 1
        if not self.whole_model:
            last = booster.num_boosted_rounds()
            booster = booster[last - 1:last]
        return FitRes(Status(Code.OK, ""), Parameters([as_json(booster)], ""),
                      self.train.num_row(), {})

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        booster = loaded(ins.parameters.tensors[0])
        error = float(np.mean((booster.predict(self.train) - self.train.get_label()) ** 2))
        return EvaluateRes(Status(Code.OK, ""), error, self.train.num_row(), {"mse": error})


def mean_mse(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    total = sum(n for n, _ in metrics)
    return {"mse": sum(n * float(m["mse"]) for n, m in metrics) / total}


@pytest.mark.timeout(180)
def test_fedxgb_bagging_trains_over_grpc(federation: LocalFederation) -> None:
    strategy = fl.server.strategy.FedXgbBagging(
        min_fit_clients=2, min_evaluate_clients=2, min_available_clients=2,
        evaluate_metrics_aggregation_fn=mean_mse,
        initial_parameters=Parameters(tensors=[], tensor_type=""))
    for seed in (1, 2):
        federation.start_client(XgbSilo(seed))
    history = federation.run_server(strategy, num_rounds=3)
    federation.join_clients()
    assert strategy.global_model is not None
    # Each round appends one tree per client: 2, 4, 6.
    assert loaded(strategy.global_model).num_boosted_rounds() == 6
    errors = [m for _, m in history.metrics_distributed["mse"]]
    assert len(errors) == 3 and errors[2] < errors[0] < float(np.var(silo_data(1).get_label()))
    assert [loss for _, loss in history.losses_distributed] == [0, 0, 0]


@pytest.mark.timeout(180)
def test_fedxgb_cyclic_lets_one_client_boost_per_round(federation: LocalFederation) -> None:
    strategy = fl.server.strategy.FedXgbCyclic(
        min_fit_clients=2, min_evaluate_clients=2, min_available_clients=2,
        evaluate_metrics_aggregation_fn=mean_mse,
        initial_parameters=Parameters(tensors=[], tensor_type=""))
    silos = [XgbSilo(seed, whole_model=True) for seed in (1, 2)]
    for silo in silos:
        federation.start_client(silo)
    history = federation.run_server(strategy, num_rounds=4)
    federation.join_clients()
    assert strategy.global_model is not None
    # One client boosts per round, and its model becomes the global one: 4 trees.
    assert sum(silo.fits for silo in silos) == 4
    assert loaded(strategy.global_model).num_boosted_rounds() == 4
    errors = [m for _, m in history.metrics_distributed["mse"]]
    assert len(errors) == 4 and errors[3] < errors[0]


@pytest.mark.parametrize("cls", [fl.server.strategy.FedXgbBagging,
                                 fl.server.strategy.FedXgbCyclic])
def test_a_checkpoint_carries_the_global_trees(cls: type, tmp_path: Path) -> None:
    strategy = cls()
    model = as_json(boost(silo_data(1), rounds=2))
    strategy.aggregate_fit(1, [(None, FitRes(Status(Code.OK, ""), Parameters([model], ""),
                                             5, {}))], [])
    save_checkpoint(tmp_path, RoundCheckpoint(
        server_round=1, parameters=strategy.model_parameters(), history=fl.server.History(),
        strategy_type=cls.__name__, strategy_state=strategy.state_dict(),
        client_manager_state={}))
    checkpoint = load_latest(tmp_path)
    assert checkpoint is not None
    resumed = cls()
    resumed.load_state_dict(checkpoint.strategy_state)
    assert resumed.global_model == model
    assert checkpoint.parameters.tensors == [model]
