"""A FedAvg that keeps each round's results and failures, for assertions."""

from __future__ import annotations

from typing import Any

import fedsilo as fl


class RecordingStrategy(fl.server.strategy.FedAvg):
    """Records (cid, metrics) per result and the failures; aggregates as FedAvg does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fit_metrics: dict[int, dict[str, dict[str, Any]]] = {}
        self.fit_failures: dict[int, list[BaseException]] = {}

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.fit_metrics[server_round] = {proxy.cid: dict(res.metrics) for proxy, res in results}
        self.fit_failures[server_round] = list(failures)
        return super().aggregate_fit(server_round, results, failures)


def round_config(server_round: int) -> dict[str, fl.common.Scalar]:
    return {"server_round": server_round}
