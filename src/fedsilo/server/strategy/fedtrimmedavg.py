"""FedTrimmedAvg: the coordinate-wise trimmed mean (Yin et al., 2018)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Unpack

from fedsilo.common.typing import NDArrays
from fedsilo.server.strategy.aggregate import aggregate_trimmed_avg
from fedsilo.server.strategy.fedavg import FedAvg, FedAvgOptions

__all__ = ["FedTrimmedAvg"]


class FedTrimmedAvg(FedAvg):
    """Drops the ``beta`` share of lowest and highest values of each coordinate, then
    averages. Needs every result at once: it does not stream."""

    def __init__(self, *, beta: float = 0.2, **kwargs: Unpack[FedAvgOptions]) -> None:
        if not 0.0 <= beta < 0.5:
            raise ValueError(f"beta must be in [0, 0.5), got {beta}")
        super().__init__(**kwargs)
        self.beta = beta

    def fit_rule(self) -> Callable[[list[tuple[NDArrays, int]]], NDArrays]:
        return partial(aggregate_trimmed_avg, proportiontocut=self.beta)
