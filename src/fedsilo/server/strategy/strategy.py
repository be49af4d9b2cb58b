"""The strategy abstraction: what to send each round and how to combine the answers."""

from __future__ import annotations

from abc import ABC, abstractmethod

from fedsilo.common.typing import EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy

__all__ = ["Strategy"]

FitResults = list[tuple[ClientProxy, FitRes]]
EvaluateResults = list[tuple[ClientProxy, EvaluateRes]]


class Strategy(ABC):
    """Hooks the round loop calls, keyed by round.

    Failures arrive as data: a list beside the results, each entry either a
    ``(client, result)`` pair with a non-OK status or an exception that says
    which client failed and why.
    """

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
