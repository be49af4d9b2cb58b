"""Runs one deterministic app with every Message-API strategy of one library and prints
the final arrays and the per-round metrics as JSON.

``python strategy_probe.py flwr`` drives Flower's strategies through an in-process Grid
(Flower's simulation needs Ray); ``python strategy_probe.py fedsilo`` runs fedsilo's with
``run_simulation`` on its process pool. The app code is the same text for both: only the
package name differs. ``python strategy_probe.py LIB 7`` runs the rules that tolerate one
malicious node among seven (Bulyan needs 4f + 3 nodes) on seven nodes instead.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import numpy as np
from local_grid import local_grid

LIB = sys.argv[1] if len(sys.argv) > 1 else "fedsilo"
app_api = importlib.import_module(f"{LIB}.app")
clientapp_api = importlib.import_module(f"{LIB}.clientapp")
strategies = importlib.import_module(f"{LIB}.serverapp.strategy")

NUM_NODES = int(sys.argv[2]) if len(sys.argv) > 2 else 5
NUM_ROUNDS = 3
SHAPES = [(3, 4), (5,)]
STRATEGIES: dict[str, dict[str, Any]] = {
    "FedAvg": {},
    "FedProx": {"proximal_mu": 0.5},
    "FedAvgM": {"server_learning_rate": 0.8, "server_momentum": 0.5},
    "FedAdagrad": {"eta": 0.3},
    "FedAdam": {"eta": 0.3},
    "FedYogi": {"eta": 0.3},
    "FedMedian": {},
    "FedTrimmedAvg": {"beta": 0.2},
    "Krum": {"num_malicious_nodes": 1},
    "MultiKrum": {"num_malicious_nodes": 1, "num_nodes_to_select": 3},
    # 5 nodes tolerate no malicious one (Bulyan needs 4f + 3): the unweighted mean.
    "Bulyan": {"num_malicious_nodes": 0},
    "QFedAvg": {"client_learning_rate": 0.5, "q": 0.2},
    # Without noise the server-side clipping is deterministic.
    "DifferentialPrivacyServerSideFixedClipping": {"noise_multiplier": 0.0,
                                                   "clipping_norm": 1.5,
                                                   "num_sampled_clients": NUM_NODES},
}
if NUM_NODES >= 7:
    STRATEGIES = {"Bulyan": {"num_malicious_nodes": 1},
                  "MultiKrum": {"num_malicious_nodes": 1, "num_nodes_to_select": 4}}
WRAPPERS = {"DifferentialPrivacyServerSideFixedClipping"}


def target(partition_id: int) -> list[np.ndarray]:
    return [(np.sin(np.arange(int(np.prod(s))) + partition_id) * (partition_id + 1))
            .reshape(s).astype(np.float32) for s in SHAPES]


client_app = clientapp_api.ClientApp()


@client_app.train()
def train(msg: Any, context: Any) -> Any:
    p = int(context.node_config["partition-id"])
    model = msg.content["arrays"].to_numpy_ndarrays()
    config = msg.content["config"]
    step = float(config["lr"]) / (1.0 + float(config.get("proximal-mu", 0.0)))
    trained = [m - step * (m - t) for m, t in zip(model, target(p), strict=True)]
    loss = float(sum(np.sum((m - t) ** 2) for m, t in zip(trained, target(p), strict=True)))
    metrics = app_api.MetricRecord({"train_loss": loss, "num-examples": 10 * (p + 1),
                                    "steps": [1.0, float(p)]})
    return app_api.Message(app_api.RecordDict({"arrays": app_api.ArrayRecord(trained),
                                               "metrics": metrics}), reply_to=msg)


@client_app.evaluate()
def evaluate(msg: Any, context: Any) -> Any:
    p = int(context.node_config["partition-id"])
    model = msg.content["arrays"].to_numpy_ndarrays()
    loss = float(sum(np.sum((m - t) ** 2) for m, t in zip(model, target(p), strict=True)))
    metrics = app_api.MetricRecord({"eval_loss": loss, "num-examples": 5 * (p + 2)})
    return app_api.Message(app_api.RecordDict({"metrics": metrics}), reply_to=msg)


def run_strategy(name: str, grid: Any) -> dict[str, Any]:
    if name in WRAPPERS:
        strategy = getattr(strategies, name)(
            strategies.FedAvg(min_available_nodes=NUM_NODES), **STRATEGIES[name])
    else:
        strategy = getattr(strategies, name)(min_available_nodes=NUM_NODES, **STRATEGIES[name])
    initial = app_api.ArrayRecord([np.full(s, 0.5, dtype=np.float32) for s in SHAPES])
    result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=NUM_ROUNDS,
                            train_config=app_api.ConfigRecord({"lr": 0.5}))
    return {
        "arrays": {k: a.numpy().tolist() for k, a in result.arrays.items()},
        "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
        "evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
    }


def run_with_flower() -> dict[str, Any]:
    return {name: run_strategy(name, local_grid("flwr", client_app, NUM_NODES))
            for name in STRATEGIES}


server_app: Any = None
if LIB == "fedsilo":
    from fedsilo.serverapp import ServerApp

    server_app = ServerApp()
    OUTCOME: dict[str, Any] = {}

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        for name in STRATEGIES:
            OUTCOME[name] = run_strategy(name, grid)


if __name__ == "__main__":
    if LIB == "flwr":
        outcome = run_with_flower()
    else:
        from fedsilo.simulation.run_app import run_simulation

        run_simulation(server_app, client_app, NUM_NODES, num_workers=2)
        outcome = OUTCOME
    print(json.dumps(outcome))
