"""``fit_clients`` and ``evaluate_clients``: Flower's functions for custom servers, on
fedsilo's round loop (submitted and threaded clients, timeouts, failure reasons)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.common import (
    ClientReportedError,
    ClientTimeout,
    Code,
    EvaluateIns,
    FitIns,
    FitRes,
    InvalidUpdate,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from fedsilo.server.server import evaluate_clients, fit_clients
from fedsilo.simulation import InProcessClientProxy
from tests.server.test_round_loop import Scaled, Submitting


class Evaluates(fl.client.NumPyClient):
    def __init__(self, loss: float, examples: int) -> None:
        self.loss, self.examples = loss, examples

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return self.loss, self.examples, {"seen": float(parameters[0].sum())}


class Broken(fl.client.Client):
    """Answers fit with what it was built with."""

    def __init__(self, res: FitRes) -> None:
        self.res = res

    def fit(self, ins: FitIns) -> FitRes:
        return self.res


def model() -> Parameters:
    return ndarrays_to_parameters([np.ones(3, np.float32)])


def test_the_functions_have_flowers_signatures() -> None:
    for function in (fit_clients, evaluate_clients):
        assert list(inspect.signature(function).parameters) == [
            "client_instructions", "max_workers", "timeout", "group_id"]


def test_fit_clients_returns_results_in_instruction_order_with_their_replies() -> None:
    ins = FitIns(model(), {"lr": 0.1})
    clients = [Submitting("a", Scaled(1.0, 5), delay=0.2),
               InProcessClientProxy("b", Scaled(2.0, 7).to_client()),
               Submitting("c", Scaled(3.0, 9), delay=0.0)]
    results, failures = fit_clients([(c, ins) for c in clients], max_workers=2, timeout=10,
                                    group_id=4)
    assert not failures
    assert [c.cid for c, _ in results] == ["a", "b", "c"]
    assert [res.num_examples for _, res in results] == [5, 7, 9]
    for (_, res), offset in zip(results, (1.0, 2.0, 3.0), strict=True):
        np.testing.assert_array_equal(parameters_to_ndarrays(res.parameters)[0], 1.0 + offset)


def test_fit_clients_reports_why_each_client_failed() -> None:
    ins = FitIns(model(), {})
    nan = ndarrays_to_parameters([np.array([np.nan, 0.0, 0.0], np.float32)])
    clients = [
        Submitting("silent", Scaled(1.0, 1), delay=None),
        InProcessClientProxy("refuses", Broken(FitRes(
            Status(Code.FIT_NOT_IMPLEMENTED, "no training here"), model(), 1, {}))),
        InProcessClientProxy("poisons", Broken(FitRes(Status(Code.OK, ""), nan, 1, {}))),
        InProcessClientProxy("fine", Scaled(1.0, 2).to_client()),
    ]
    results, failures = fit_clients([(c, ins) for c in clients], max_workers=None,
                                    timeout=0.5, group_id=1)
    assert [c.cid for c, _ in results] == ["fine"]
    by_client = {f.cid: f for f in failures}  # type: ignore[union-attr]
    assert isinstance(by_client["silent"], ClientTimeout)
    assert "no reply within 0.5 s" in str(by_client["silent"])
    assert isinstance(by_client["refuses"], ClientReportedError)
    assert "no training here" in str(by_client["refuses"])
    assert isinstance(by_client["poisons"], InvalidUpdate)
    assert "NaN" in str(by_client["poisons"])


def test_fit_clients_leaves_models_that_are_not_arrays_to_the_strategy() -> None:
    # An XGBoost model travels as JSON bytes in a Parameters with an empty tensor type.
    trees = Parameters(tensors=[b'{"learner": {}}'], tensor_type="")
    client = InProcessClientProxy("xgb", Broken(FitRes(Status(Code.OK, ""), trees, 3, {})))
    results, failures = fit_clients([(client, FitIns(model(), {}))], None, 5, 1)
    assert not failures and results[0][1].parameters.tensors == trees.tensors


def test_evaluate_clients_returns_results_and_failures() -> None:
    ins = EvaluateIns(model(), {})
    clients = [InProcessClientProxy("a", Evaluates(0.5, 10).to_client()),
               InProcessClientProxy("nan", Evaluates(float("nan"), 10).to_client()),
               Submitting("silent", Scaled(1.0, 1), delay=None)]
    results, failures = evaluate_clients([(c, ins) for c in clients], max_workers=4,
                                         timeout=0.5, group_id=2)
    assert [(c.cid, res.loss, res.num_examples, res.metrics) for c, res in results] == [
        ("a", 0.5, 10, {"seen": 3.0})]
    assert {type(f) for f in failures} == {InvalidUpdate, ClientTimeout}


class FlowerStyleServer(fl.server.Server):
    """Overrides ``fit`` as custom servers written for Flower do."""

    def fit(self, num_rounds: int, timeout: float | None) -> tuple[fl.server.History, float]:
        history = fl.server.History()
        self.parameters = self._get_initial_parameters(server_round=0, timeout=timeout)
        for current_round in range(1, num_rounds + 1):
            fitted = self.fit_round(server_round=current_round, timeout=timeout)
            if fitted is not None:
                parameters, metrics, _ = fitted
                if parameters:
                    self.parameters = parameters
                history.add_metrics_distributed_fit(server_round=current_round, metrics=metrics)
            evaluated = self.evaluate_round(server_round=current_round, timeout=timeout)
            if evaluated is not None and evaluated[0] is not None:
                history.add_loss_distributed(server_round=current_round, loss=evaluated[0])
        return history, 0.0


class FromZero(Scaled):
    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(2, np.float32)]

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return float(parameters[0].sum()), self.examples, {}


def test_a_server_overriding_fit_as_for_flower_runs_its_rounds() -> None:
    manager = fl.server.SimpleClientManager()
    for cid, offset, examples in (("a", 1.0, 1), ("b", 4.0, 3)):
        manager.register(InProcessClientProxy(cid, FromZero(offset, examples).to_client()))
    strategy = fl.server.strategy.FedAvg(min_fit_clients=2, min_evaluate_clients=2,
                                         min_available_clients=2)
    server = FlowerStyleServer(client_manager=manager, strategy=strategy)
    history, _ = server.fit(num_rounds=2, timeout=10)
    # From a client's zeros, each round adds (1 * 1 + 4 * 3) / 4 = 3.25.
    assert parameters_to_ndarrays(server.parameters)[0].tolist() == [6.5, 6.5]
    assert history.losses_distributed == [(1, 6.5), (2, 13.0)]
