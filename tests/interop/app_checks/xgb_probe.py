"""Runs FedXgbBagging and FedXgbCyclic of one library on the same boosters and prints the
final model's bytes and the per-round metrics as JSON.

``python xgb_probe.py LIB MODELS``: LIB is ``flwr`` or ``fedsilo``; MODELS is a JSON file
``{round: {partition-id: hex of the booster's JSON}}`` written with XGBoost beforehand, so
neither side needs XGBoost: each node replies with the booster given for its round. Both
libraries' strategies run in this process on an in-process Grid that delivers messages in
the order they are sent, with ``random`` seeded the same, so they sample the same nodes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import random
import sys
from typing import Any

import numpy as np
from local_grid import local_grid

LIB = sys.argv[1]
MODELS: dict[str, dict[str, str]] = json.loads(open(sys.argv[2]).read())  # noqa: SIM115
app_api = importlib.import_module(f"{LIB}.app")
clientapp_api = importlib.import_module(f"{LIB}.clientapp")
strategies = importlib.import_module(f"{LIB}.serverapp.strategy")

NUM_NODES = 3
NUM_ROUNDS = len(MODELS)

client_app = clientapp_api.ClientApp()


def _digest(msg: Any) -> float:
    """A fingerprint of the model a node received."""
    model = msg.content["arrays"]["0"].numpy().tobytes()
    return float(int(hashlib.sha256(model).hexdigest()[:6], 16))


@client_app.train()
def train(msg: Any, context: Any) -> Any:
    p = int(context.node_config["partition-id"])
    server_round = str(msg.content["config"]["server-round"])
    model = np.frombuffer(bytes.fromhex(MODELS[server_round][str(p)]), dtype=np.uint8)
    metrics = app_api.MetricRecord({"num-examples": 10 * (p + 1), "node": float(p),
                                    "received": _digest(msg)})
    return app_api.Message(app_api.RecordDict({"arrays": app_api.ArrayRecord([model]),
                                               "metrics": metrics}), reply_to=msg)


@client_app.evaluate()
def evaluate(msg: Any, context: Any) -> Any:
    p = int(context.node_config["partition-id"])
    metrics = app_api.MetricRecord({"num-examples": 5 * (p + 2), "node": float(p),
                                    "received": _digest(msg)})
    return app_api.Message(app_api.RecordDict({"metrics": metrics}), reply_to=msg)


def run_strategy(name: str) -> dict[str, Any]:
    random.seed(7)
    strategy = getattr(strategies, name)(min_available_nodes=NUM_NODES)
    result = strategy.start(grid=local_grid(LIB, client_app, NUM_NODES), num_rounds=NUM_ROUNDS,
                            initial_arrays=app_api.ArrayRecord([np.frombuffer(b"", np.uint8)]))
    return {
        "arrays": {k: a.numpy().tobytes().hex() for k, a in result.arrays.items()},
        "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
        "evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
    }


if __name__ == "__main__":
    print(json.dumps({name: run_strategy(name) for name in ("FedXgbBagging", "FedXgbCyclic")}))
