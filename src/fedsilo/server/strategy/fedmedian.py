"""FedMedian: the coordinate-wise median of client models (Yin et al., 2018)."""

from __future__ import annotations

from collections.abc import Callable

from fedsilo.common.typing import NDArrays
from fedsilo.server.strategy.aggregate import aggregate_median
from fedsilo.server.strategy.fedavg import FedAvg

__all__ = ["FedMedian"]


class FedMedian(FedAvg):
    """Robust to a minority of arbitrary updates in each coordinate.

    Needs every result at once: it does not stream.
    """

    def fit_rule(self) -> Callable[[list[tuple[NDArrays, int]]], NDArrays]:
        return aggregate_median
