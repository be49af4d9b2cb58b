"""A Flower server (``flwr.server.start_server`` with FedAvg) that writes its run to JSON.

Runs under flwr 1.3.0 and the newest flwr. The global model starts at zeros of ``SHAPES``; each
round's config carries ``server_round``; the centralized loss is the sum of all parameters. The
JSON (``--out``) holds the History, the aggregated parameters of every round, and the failures
FedAvg was handed (it accepts them silently otherwise).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import flwr as fl
import numpy as np

SHAPES = [(3, 2), (2,)]


class RecordingFedAvg(fl.server.strategy.FedAvg):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aggregated: dict[int, list[list[float]]] = {}
        self.failures: dict[str, list[str]] = {}

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.failures.setdefault("fit", []).extend(repr(f) for f in failures)
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        if parameters is not None:
            arrays = fl.common.parameters_to_ndarrays(parameters)
            self.aggregated[server_round] = [a.tolist() for a in arrays]
        return parameters, metrics

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        self.failures.setdefault("evaluate", []).extend(repr(f) for f in failures)
        return super().aggregate_evaluate(server_round, results, failures)


def round_config(server_round: int) -> dict[str, Any]:
    return {"server_round": server_round}


def central_loss(server_round: int, parameters: list[np.ndarray],
                 config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    return float(sum(p.sum() for p in parameters)), {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--num-clients", type=int, required=True)
    parser.add_argument("--num-rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    strategy = RecordingFedAvg(
        min_fit_clients=args.num_clients,
        min_evaluate_clients=args.num_clients,
        min_available_clients=args.num_clients,
        initial_parameters=fl.common.ndarrays_to_parameters([np.zeros(s) for s in SHAPES]),
        on_fit_config_fn=round_config,
        on_evaluate_config_fn=round_config,
        evaluate_fn=central_loss,
    )
    history = fl.server.start_server(
        server_address=args.server_address,
        config=fl.server.ServerConfig(num_rounds=args.num_rounds, round_timeout=60),
        strategy=strategy,
    )
    args.out.write_text(json.dumps({
        "flwr_version": fl.__version__,
        "history": {name: value for name, value in vars(history).items()
                    if name.startswith(("losses_", "metrics_"))},
        "aggregated": strategy.aggregated,
        "failures": strategy.failures,
    }))


if __name__ == "__main__":
    main()
