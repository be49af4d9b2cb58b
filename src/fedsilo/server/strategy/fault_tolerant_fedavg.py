"""FaultTolerantFedAvg: FedAvg that aggregates only when enough clients completed."""

from __future__ import annotations

from typing import Any, Unpack

from fedsilo.common.typing import EvaluateRes, FitRes
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.fedavg import FedAvg, FedAvgOptions

__all__ = ["FaultTolerantFedAvg"]


class FaultTolerantFedAvg(FedAvg):
    """Accepts failures, but skips a round (fit or evaluate) whose share of successful
    clients falls below ``min_completion_rate_fit`` / ``min_completion_rate_evaluate``.
    Streams like FedAvg."""

    def __init__(
        self,
        *,
        min_completion_rate_fit: float = 0.5,
        min_completion_rate_evaluate: float = 0.5,
        **kwargs: Unpack[FedAvgOptions],
    ) -> None:
        kwargs.setdefault("min_fit_clients", 1)
        kwargs.setdefault("min_evaluate_clients", 1)
        kwargs.setdefault("min_available_clients", 1)
        kwargs["accept_failures"] = True
        super().__init__(**kwargs)
        self.min_completion_rate_fit = min_completion_rate_fit
        self.min_completion_rate_evaluate = min_completion_rate_evaluate

    def accepts_round(
        self,
        results: list[tuple[ClientProxy, FitRes]] | list[tuple[ClientProxy, EvaluateRes]],
        failures: list[Any],
    ) -> bool:
        if not results:
            return False
        is_fit = isinstance(results[0][1], FitRes)
        required = self.min_completion_rate_fit if is_fit else self.min_completion_rate_evaluate
        return len(results) / (len(results) + len(failures)) >= required
