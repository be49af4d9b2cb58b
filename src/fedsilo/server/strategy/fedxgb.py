"""Federated XGBoost strategies of Flower's legacy API: bagging, cyclic, and NN averaging.

The model is XGBoost's JSON bytes, one tensor of a ``Parameters`` with an empty tensor
type, not numpy arrays, so the round loop checks only example counts
(``parameters_are_arrays = False``). The tree math is
:func:`fedsilo.server.strategy.aggregate.aggregate_xgb_bagging`, shared with the app API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from fedsilo.common.logger import warn_deprecated_feature
from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
)
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.aggregate import aggregate, aggregate_xgb_bagging
from fedsilo.server.strategy.fedavg import FedAvg

__all__ = ["FedXgbBagging", "FedXgbCyclic", "FedXgbNnAvg"]

log = logging.getLogger("fedsilo.server")

TreeEvaluateFn = Callable[[int, Parameters, dict[str, Scalar]],
                          tuple[float, dict[str, Scalar]] | None]


class _TreeModelStrategy(FedAvg):
    """What both tree strategies share: the JSON model and the evaluation they report."""

    parameters_are_arrays = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.global_model: bytes | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    def state_dict(self) -> dict[str, Any]:
        """The global model's bytes, so a resumed run goes on from the same trees."""
        if self.global_model is None:
            return {}
        return {"global_model": np.frombuffer(self.global_model, dtype=np.uint8)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - {"global_model"}
        if unknown:
            raise ValueError(f"{type(self).__name__} keeps only its global model, but the "
                             f"checkpoint holds {sorted(unknown)}")
        model = state.get("global_model")
        self.global_model = None if model is None else np.asarray(model, np.uint8).tobytes()

    def model_parameters(self) -> Parameters:
        """The global model as the clients receive it: one tensor of JSON bytes."""
        return Parameters(tensors=[self.global_model or b""], tensor_type="")

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Loss 0 (trees report metrics such as AUC), metrics through
        ``evaluate_metrics_aggregation_fn``."""
        if not self.accepts_round(results, failures):
            return None, {}
        if self.evaluate_metrics_aggregation_fn is not None:
            return 0, self.evaluate_metrics_aggregation_fn(
                [(res.num_examples, res.metrics) for _, res in results])
        if server_round == 1:
            log.warning("No evaluate_metrics_aggregation_fn provided")
        return 0, {}


class FedXgbBagging(_TreeModelStrategy):
    """Federated XGBoost by bagging: each round every sampled client grows trees on its own
    data from the global model, and the server appends each client's new trees to it.

    Parameters
    ----------
    evaluate_function
        Server-side evaluation ``(round, parameters, config) -> (loss, metrics) | None``;
        it gets the model as Parameters (JSON bytes), not arrays.
    **kwargs
        FedAvg's keyword arguments (sampling, configs, ``evaluate_metrics_aggregation_fn``).
    """

    def __init__(self, evaluate_function: TreeEvaluateFn | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluate_function = evaluate_function

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not self.accepts_round(results, failures):
            return None, {}
        model = self.global_model
        for _, res in results:
            for tensor in res.parameters.tensors:
                model = aggregate_xgb_bagging(model, tensor)
        self.global_model = model
        return self.model_parameters(), {}

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_function is None:
            return None
        return self.evaluate_function(server_round, parameters, {})


class FedXgbCyclic(_TreeModelStrategy):
    """Federated XGBoost in turns: each round one client, the next in the sampled order,
    boosts the global model further, and its model becomes the global model.

    Parameters
    ----------
    **kwargs
        FedAvg's keyword arguments.
    """

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not self.accepts_round(results, failures):
            return None, {}
        for _, res in results:
            for tensor in res.parameters.tensors:
                self.global_model = tensor
        return self.model_parameters(), {}

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        return _in_turn(server_round, super().configure_fit(server_round, parameters,
                                                            client_manager))

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return _in_turn(server_round, super().configure_evaluate(server_round, parameters,
                                                                 client_manager))


def _in_turn(server_round: int, instructions: list[Any]) -> list[Any]:
    """The one sampled client whose turn round ``server_round`` is."""
    if not instructions:
        return []
    return [instructions[(server_round - 1) % len(instructions)]]


class FedXgbNnAvg(FedAvg):
    """Federated XGBoost with a neural network over the trees (Ma et al., 2023; deprecated).

    A client's ``FitRes.parameters`` is a pair ``[Parameters of the network, trees]``;
    the networks are averaged by example count and the trees collected. The pair is no
    Parameters message, so this strategy works with in-process clients (simulation), not
    over the wire, as in Flower.
    """

    parameters_are_arrays = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        warn_deprecated_feature("`FedXgbNnAvg` strategy")

    def evaluate(
        self, server_round: int, parameters: Any
    ) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_fn is None:
            return None
        return self.evaluate_fn(server_round, parameters, {})

    def aggregate_fit(  # type: ignore[override]
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Any | None, dict[str, Scalar]]:
        if not self.accepts_round(results, failures):
            return None, {}
        pairs: list[Any] = [res.parameters for _, res in results]
        network = aggregate([(parameters_to_ndarrays(pair[0].parameters), res.num_examples)
                             for pair, (_, res) in zip(pairs, results, strict=True)])
        trees = [pair[1] for pair in pairs]
        metrics: dict[str, Scalar] = {}
        if self.fit_metrics_aggregation_fn is not None:
            metrics = self.aggregate_metrics_fit(results)
        elif server_round == 1:
            log.warning("No fit_metrics_aggregation_fn provided")
        return [ndarrays_to_parameters(network), trees], metrics
