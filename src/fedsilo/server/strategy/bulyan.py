"""Bulyan (El Mhamdi et al., 2018): Krum selection, then a trimmed mean around the median."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from fedsilo.common.typing import NDArrays
from fedsilo.server.strategy.aggregate import aggregate_bulyan, aggregate_krum
from fedsilo.server.strategy.fedavg import FedAvg, FedAvgOptions

__all__ = ["Bulyan"]


class Bulyan(FedAvg):
    """Krum picks ``n - 2f`` models one by one; each coordinate is the mean of the
    ``n - 4f`` picked values nearest their median. Needs ``n >= 4f + 3`` results and all
    of them at once: it does not stream.

    ``first_aggregation_rule`` is Krum, the only Byzantine-resilient selection Flower
    offers too; ``aggregation_rule_kwargs`` are accepted for Flower's signature (``to_keep=0``).
    """

    def __init__(
        self,
        *,
        num_malicious_clients: int = 0,
        first_aggregation_rule: Callable[..., Any] = aggregate_krum,
        **kwargs: Any,
    ) -> None:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in FedAvgOptions.__optional_keys__}
        if getattr(first_aggregation_rule, "__name__", "") != "aggregate_krum":
            raise ValueError("Bulyan selects with Krum: first_aggregation_rule must be "
                             "aggregate_krum")
        if kwargs.get("to_keep", 0) not in (0, None) or set(kwargs) - {"to_keep"}:
            raise ValueError(f"Bulyan's Krum selection takes only to_keep=0, got {kwargs}")
        super().__init__(**options)  # type: ignore[arg-type]
        self.num_malicious_clients = num_malicious_clients
        self.first_aggregation_rule = first_aggregation_rule
        self.aggregation_rule_kwargs = kwargs

    def fit_rule(self) -> Callable[[list[tuple[NDArrays, int]]], NDArrays]:
        return partial(aggregate_bulyan, num_malicious=self.num_malicious_clients)
