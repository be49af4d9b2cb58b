"""A FedAvg that remembers what each round received (for assertions)."""

from __future__ import annotations

from typing import Any

import fedsilo as fl
from fedsilo.common import parameters_to_ndarrays


class RecordingFedAvg(fl.server.strategy.FedAvg):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fit_results: dict[int, list[tuple[list[Any], int]]] = {}
        self.fit_failures: dict[int, list[BaseException]] = {}
        self.aggregated: dict[int, list[Any]] = {}

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.fit_results[server_round] = [
            ([a.copy() for a in parameters_to_ndarrays(res.parameters)], res.num_examples)
            for _, res in results
        ]
        self.fit_failures[server_round] = list(failures)
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        if parameters is not None:
            self.aggregated[server_round] = parameters_to_ndarrays(parameters)
        return parameters, metrics
