"""FedAvg: the example-weighted mean of client models (McMahan et al., 2017)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypedDict

import numpy as np

from fedsilo.common.memory import BufferPool
from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    MetricsAggregationFn,
    NDArrays,
    Parameters,
    Scalar,
)
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.aggregate import (
    add_weighted,
    aggregate_weighted_mean,
    start_weighted,
    weighted_loss_avg,
    weighted_mean_from_sums,
)
from fedsilo.server.strategy.strategy import FitAccumulator, Strategy

log = logging.getLogger("fedsilo.server")

__all__ = ["EvaluateFn", "FedAvg", "FedAvgOptions", "SamplingOptions",
           "WeightedMeanAccumulator"]

EvaluateFn = Callable[
    [int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None
]


class SamplingOptions(TypedDict, total=False):
    """FedAvg's keyword arguments but ``initial_parameters`` (required by FedOpt)."""

    fraction_fit: float
    fraction_evaluate: float
    min_fit_clients: int
    min_evaluate_clients: int
    min_available_clients: int
    evaluate_fn: EvaluateFn | None
    on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None
    on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None
    accept_failures: bool
    fit_metrics_aggregation_fn: MetricsAggregationFn | None
    evaluate_metrics_aggregation_fn: MetricsAggregationFn | None
    inplace: bool


class FedAvgOptions(SamplingOptions, total=False):
    """FedAvg's keyword arguments, which every strategy built on it accepts."""

    initial_parameters: Parameters | None


class FedAvg(Strategy):
    """Federated Averaging.

    Each round samples ``max(fraction_fit * available, min_fit_clients)``
    clients, sends them the global parameters with the round's config, and
    replaces the global model by the mean of their models weighted by their
    number of training examples.
    """

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | None = None,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        inplace: bool = True,
    ) -> None:
        self.fraction_fit = fraction_fit
        self.fraction_evaluate = fraction_evaluate
        self.min_fit_clients = min_fit_clients
        self.min_evaluate_clients = min_evaluate_clients
        self.min_available_clients = min_available_clients
        self.evaluate_fn = evaluate_fn
        self.on_fit_config_fn = on_fit_config_fn
        self.on_evaluate_config_fn = on_evaluate_config_fn
        self.accept_failures = accept_failures
        self.initial_parameters = initial_parameters
        self.fit_metrics_aggregation_fn = fit_metrics_aggregation_fn
        self.evaluate_metrics_aggregation_fn = evaluate_metrics_aggregation_fn
        self.inplace = inplace
        if min_fit_clients > min_available_clients or min_evaluate_clients > min_available_clients:
            log.warning(
                "min_available_clients (%d) is below min_fit_clients (%d) or "
                "min_evaluate_clients (%d): rounds will wait for more clients than the "
                "federation waits for at the start",
                min_available_clients, min_fit_clients, min_evaluate_clients,
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    def num_fit_clients(self, num_available_clients: int) -> tuple[int, int]:
        """How many clients to sample for training, and how many must be available."""
        num_clients = int(num_available_clients * self.fraction_fit)
        return max(num_clients, self.min_fit_clients), self.min_available_clients

    def num_evaluation_clients(self, num_available_clients: int) -> tuple[int, int]:
        """How many clients to sample for evaluation, and how many must be available."""
        num_clients = int(num_available_clients * self.fraction_evaluate)
        return max(num_clients, self.min_evaluate_clients), self.min_available_clients

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.initial_parameters

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_fn is None:
            return None
        result = self.evaluate_fn(server_round, parameters_to_ndarrays(parameters), {})
        if result is None:
            return None
        loss, metrics = result
        return loss, metrics

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        config = self.on_fit_config_fn(server_round) if self.on_fit_config_fn else {}
        fit_ins = FitIns(parameters, config)  # one instruction object shared by all clients
        sample_size, min_num = self.num_fit_clients(client_manager.num_available())
        clients = client_manager.sample(num_clients=sample_size, min_num_clients=min_num)
        return [(client, fit_ins) for client in clients]

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if self.fraction_evaluate == 0.0:
            return []
        config = self.on_evaluate_config_fn(server_round) if self.on_evaluate_config_fn else {}
        evaluate_ins = EvaluateIns(parameters, config)
        sample_size, min_num = self.num_evaluation_clients(client_manager.num_available())
        clients = client_manager.sample(num_clients=sample_size, min_num_clients=min_num)
        return [(client, evaluate_ins) for client in clients]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        return self.aggregate_fit_with(self.fit_rule(), server_round, results, failures)

    def fit_rule(self) -> Callable[[list[tuple[NDArrays, int]]], NDArrays]:
        """The aggregation rule over ``[(arrays, num_examples)]``: the weighted mean here.

        A subclass with another rule overrides this; a rule other than the mean needs every
        result at once, so such a subclass does not stream.
        """
        return aggregate_weighted_mean

    def aggregate_fit_with(
        self,
        rule: Callable[[list[tuple[NDArrays, int]]], NDArrays],
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Apply ``rule`` to every result and hand its output to :meth:`conclude_fit`.

        Rules that need all results at once (median, Krum, ...) aggregate through here.
        """
        if not self.accepts_round(results, failures):
            return None, {}
        weighted = [(parameters_to_ndarrays(res.parameters), res.num_examples)
                    for _, res in results]
        return self.conclude_fit(server_round, rule(weighted), results)

    def accepts_round(
        self,
        results: list[tuple[ClientProxy, FitRes]] | list[tuple[ClientProxy, EvaluateRes]],
        failures: list[Any],
    ) -> bool:
        """Whether a round with these results and failures is aggregated at all."""
        return bool(results) and (self.accept_failures or not failures)

    def conclude_fit(
        self, server_round: int, aggregate: NDArrays, results: list[tuple[ClientProxy, FitRes]]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Turn the rule's aggregate into the new global model; server optimizers step here."""
        return ndarrays_to_parameters(aggregate), self.aggregate_metrics_fit(results)

    def fit_accumulator(
        self, server_round: int, parameters: Parameters
    ) -> FitAccumulator | None:
        # A subclass that overrides aggregate_fit must see every result itself.
        if overrides_aggregate_fit(self, FedAvg) or type(self).fit_rule is not FedAvg.fit_rule:
            return None
        return WeightedMeanAccumulator(self, server_round)

    def aggregate_metrics_fit(self, results: list[tuple[ClientProxy, FitRes]]) -> dict[str, Scalar]:
        """Fit metrics through ``fit_metrics_aggregation_fn`` (empty without one)."""
        if self.fit_metrics_aggregation_fn is None:
            return {}
        return self.fit_metrics_aggregation_fn(
            [(res.num_examples, res.metrics) for _, res in results])

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        if not self.accepts_round(results, failures):
            return None, {}
        loss = weighted_loss_avg([(res.num_examples, res.loss) for _, res in results])
        metrics: dict[str, Scalar] = {}
        if self.evaluate_metrics_aggregation_fn is not None:
            metrics = self.evaluate_metrics_aggregation_fn(
                [(res.num_examples, res.metrics) for _, res in results]
            )
        return loss, metrics


class WeightedMeanAccumulator(FitAccumulator):
    """FedAvg's streaming form: running float64 sums weighted by example counts."""

    def __init__(self, strategy: FedAvg, server_round: int) -> None:
        self.strategy = strategy
        self.server_round = server_round
        self.sums_: NDArrays = []
        self.like_: NDArrays = []
        self.total_ = 0

    def add(self, client: ClientProxy, res: FitRes, arrays: NDArrays) -> None:
        if self.sums_:
            self.sums_ = add_weighted(self.sums_, arrays, res.num_examples)
        else:
            # The sums' buffer is the strategy's, kept from round to round: the mean is
            # written over its start, so it is free again once the new model is serialized.
            pool = self.strategy.__dict__.setdefault("_sums_buffers", BufferPool(1))
            size = 8 * sum(int(np.size(array)) for array in arrays)
            self.sums_ = start_weighted(arrays, res.num_examples, pool.take(size))
        if not self.like_:
            # Dtypes only: a fresh empty array, since a view would keep the reply alive.
            self.like_ = [np.empty(0, dtype=array.dtype) for array in arrays]
        self.total_ += res.num_examples

    def finish(
        self,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not self.strategy.accepts_round(results, failures) or not self.sums_:
            return None, {}
        mean = weighted_mean_from_sums(self.sums_, self.total_, self.like_)
        self.sums_ = []
        return self.strategy.conclude_fit(self.server_round, mean, results)


def overrides_aggregate_fit(strategy: Strategy, streaming_class: type[Strategy]) -> bool:
    """Whether ``strategy``'s class replaced the ``aggregate_fit`` of ``streaming_class``.

    Such a subclass must see every result itself, so it does not stream.
    """
    return type(strategy).aggregate_fit is not streaming_class.aggregate_fit
