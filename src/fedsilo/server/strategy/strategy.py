"""The strategy abstraction: what to send each round and how to combine the answers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from fedsilo.common.typing import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
)
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy

__all__ = ["FitAccumulator", "Strategy", "WrappingStrategy"]

FitResults = list[tuple[ClientProxy, FitRes]]
EvaluateResults = list[tuple[ClientProxy, EvaluateRes]]


class FitAccumulator(ABC):
    """Folds training results into an aggregate as they arrive.

    A round that streams holds one model's worth of running state instead of
    every client's parameters. The round loop calls ``add`` once per valid
    result (serialized by the loop), then ``finish`` with the results, whose
    parameters it has already released, and the failures.
    """

    @abstractmethod
    def add(self, client: ClientProxy, res: FitRes, arrays: NDArrays) -> None:
        """Fold one client's decoded, validated parameters into the running state."""

    @abstractmethod
    def finish(
        self,
        results: FitResults,
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The round's aggregate, exactly what ``aggregate_fit`` would return."""


class Strategy(ABC):
    """Hooks the round loop calls, keyed by round.

    Failures arrive as data: a list beside the results, each entry either a
    ``(client, result)`` pair with a non-OK status or an exception that says
    which client failed and why.
    """

    parameters_are_arrays: bool = True
    """Whether the model's ``Parameters`` hold numpy arrays. The round loop then decodes
    every update and checks it against the global model (count, shapes, dtypes, finite
    values). A strategy whose model is something else, such as XGBoost's JSON trees, sets
    False: the loop then checks only the example counts and leaves the bytes to it."""

    @abstractmethod
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """The global model's starting point, or None to ask a client for it."""

    @abstractmethod
    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Which clients train this round, with what instructions."""

    @abstractmethod
    def aggregate_fit(
        self,
        server_round: int,
        results: FitResults,
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Combine the training results into new global parameters and metrics."""

    def fit_accumulator(
        self, server_round: int, parameters: Parameters
    ) -> FitAccumulator | None:
        """An accumulator for streaming this round's aggregation, or None (the default).

        Rules that need every result at once (median, Krum, ...) return None and
        get all results in ``aggregate_fit``.
        """
        return None

    @abstractmethod
    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """Which clients evaluate this round, with what instructions."""

    @abstractmethod
    def aggregate_evaluate(
        self,
        server_round: int,
        results: EvaluateResults,
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Combine the clients' evaluations into one loss and metrics."""

    @abstractmethod
    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """Evaluate the global parameters on the server's own data (None: not done)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume this strategy where it stopped.

        Values are numpy arrays, lists of numpy arrays, or JSON values (numbers, strings,
        booleans, None, and lists or string-keyed dicts of those). Stateless rules return {}.
        Server optimizers return their moments; privacy wrappers their accountant's history.
        """
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, into a strategy built with the same arguments."""
        if state:
            raise ValueError(
                f"{type(self).__name__} keeps no state, but the checkpoint holds {sorted(state)}"
            )


class WrappingStrategy(Strategy):
    """A strategy around another (``self.strategy``, set by the subclass): initial
    parameters and everything of evaluation are the wrapped strategy's; the subclass
    decides what happens in fit (the differential-privacy wrappers, for instance)."""

    strategy: Strategy

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.strategy.initialize_parameters(client_manager)

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        return self.strategy.evaluate(server_round, parameters)
