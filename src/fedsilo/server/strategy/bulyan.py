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

    ``first_aggregation_rule`` picks the models; it must return one of the models it is
    given (Krum, the default, with ``to_keep=0``). Further keyword arguments go to it, as
    Flower's ``aggregation_rule_kwargs``.
    """

    def __init__(
        self,
        *,
        num_malicious_clients: int = 0,
        first_aggregation_rule: Callable[..., Any] = aggregate_krum,
        **kwargs: Any,
    ) -> None:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in FedAvgOptions.__optional_keys__}
        super().__init__(**options)  # type: ignore[arg-type]
        self.num_malicious_clients = num_malicious_clients
        self.first_aggregation_rule = first_aggregation_rule
        self.aggregation_rule_kwargs = kwargs

    def fit_rule(self) -> Callable[[list[tuple[NDArrays, int]]], NDArrays]:
        return partial(aggregate_bulyan, num_malicious=self.num_malicious_clients,
                       aggregation_rule=self.first_aggregation_rule,
                       **self.aggregation_rule_kwargs)
