"""Krum and Multi-Krum (Blanchard et al., 2017): keep the models closest to the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Unpack

from fedsilo.common.typing import NDArrays
from fedsilo.server.strategy.aggregate import aggregate_krum
from fedsilo.server.strategy.fedavg import FedAvg, FedAvgOptions

__all__ = ["Krum", "MultiKrum"]


class Krum(FedAvg):
    """Picks the client model with the smallest sum of squared distances to its
    ``n - f - 2`` nearest neighbours; tolerates ``f = num_malicious_clients`` Byzantine
    clients when ``n > 2f + 2``. With ``num_clients_to_keep > 0`` it averages that many
    best-scored models (Multi-Krum). Needs every result at once: it does not stream."""

    def __init__(
        self,
        *,
        num_malicious_clients: int = 0,
        num_clients_to_keep: int = 0,
        **kwargs: Unpack[FedAvgOptions],
    ) -> None:
        if num_malicious_clients < 0 or num_clients_to_keep < 0:
            raise ValueError("num_malicious_clients and num_clients_to_keep must be >= 0")
        super().__init__(**kwargs)
        self.num_malicious_clients = num_malicious_clients
        self.num_clients_to_keep = num_clients_to_keep

    def _to_keep(self, num_results: int) -> int:
        return self.num_clients_to_keep

    def fit_rule(self) -> Callable[[list[tuple[NDArrays, int]]], NDArrays]:
        def rule(weighted: list[tuple[NDArrays, int]]) -> NDArrays:
            return aggregate_krum(weighted, self.num_malicious_clients,
                                  self._to_keep(len(weighted)))

        return rule


class MultiKrum(Krum):
    """Multi-Krum: the example-weighted mean of the ``m`` best Krum-scored models.

    ``num_clients_to_keep`` defaults to ``n - f`` of each round, the paper's choice.
    """

    def __init__(
        self,
        *,
        num_malicious_clients: int = 0,
        num_clients_to_keep: int | None = None,
        **kwargs: Unpack[FedAvgOptions],
    ) -> None:
        super().__init__(num_malicious_clients=num_malicious_clients,
                         num_clients_to_keep=num_clients_to_keep or 0, **kwargs)
        self.num_clients_to_keep = num_clients_to_keep  # type: ignore[assignment]

    def _to_keep(self, num_results: int) -> int:
        if self.num_clients_to_keep is None:
            return max(1, num_results - self.num_malicious_clients)
        return self.num_clients_to_keep
