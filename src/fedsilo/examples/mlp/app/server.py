"""The MLP app's server side: FedAvg from a seeded start, scored on the server's test set.

``run_config``: ``num-server-rounds``, ``hidden`` (units), ``seed``; ``node_config``:
``data-dir`` (holding ``test.npz``; the shape of the data is read from it) and ``min-sites``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import task  # the app's own module, next to this file

import fedsilo as fl


def server_fn(context: Any) -> tuple[fl.server.strategy.Strategy, fl.server.ServerConfig]:
    """FedAvg over ``min-sites`` sites, with the test set's loss and accuracy each round."""
    run_config, node_config = context.run_config, context.node_config
    X_test, y_test = task.load_split(Path(node_config["data-dir"]) / "test.npz")
    n_classes = int(y_test.max()) + 1
    start = task.initial_parameters(X_test.shape[1], int(run_config.get("hidden", 16)),
                                    n_classes, int(run_config.get("seed", 0)))

    def evaluate(server_round: int, parameters: list[np.ndarray], config: dict[str, Any]
                 ) -> tuple[float, dict[str, Any]]:
        loss, accuracy = task.loss_and_accuracy(parameters, X_test, y_test)
        return loss, {"accuracy": accuracy}

    sites = int(node_config.get("min-sites", 2))
    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=sites, min_evaluate_clients=sites, min_available_clients=sites,
        initial_parameters=fl.common.ndarrays_to_parameters(start),
        evaluate_fn=evaluate,
        on_fit_config_fn=lambda server_round: {"server-round": server_round},
    )
    rounds = int(run_config.get("num-server-rounds", 3))
    return strategy, fl.server.ServerConfig(num_rounds=rounds)
