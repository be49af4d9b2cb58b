"""Runs one deterministic app with every Message-API strategy of one library and prints
the final arrays and the per-round metrics as JSON.

``python strategy_probe.py flwr`` drives Flower's strategies through an in-process Grid
(Flower's simulation needs Ray); ``python strategy_probe.py fedsilo`` runs fedsilo's with
``run_simulation`` on its process pool. The app code is the same text for both: only the
package name differs.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import numpy as np

LIB = sys.argv[1] if len(sys.argv) > 1 else "fedsilo"
app_api = importlib.import_module(f"{LIB}.app")
clientapp_api = importlib.import_module(f"{LIB}.clientapp")
strategies = importlib.import_module(f"{LIB}.serverapp.strategy")

NUM_NODES = 5
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
    "QFedAvg": {"client_learning_rate": 0.5, "q": 0.2},
    # Without noise the server-side clipping is deterministic.
    "DifferentialPrivacyServerSideFixedClipping": {"noise_multiplier": 0.0,
                                                   "clipping_norm": 1.5,
                                                   "num_sampled_clients": NUM_NODES},
}
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
    from flwr.serverapp import Grid
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0

    class LocalGrid(Grid):  # type: ignore[misc]
        """Delivers each message to the ClientApp in this process."""

        def __init__(self) -> None:
            self.contexts = {n: app_api.Context(run_id=1, node_id=n, node_config={
                "partition-id": n - 1, "num-partitions": NUM_NODES}, state=app_api.RecordDict(),
                run_config={}) for n in range(1, NUM_NODES + 1)}
            self.replies: dict[str, Any] = {}

        @property
        def run(self) -> Any:
            return None

        def set_run(self, run_id: int) -> None:
            return None

        def create_message(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        def get_node_ids(self) -> list[int]:
            return list(self.contexts)

        def push_messages(self, messages: Any) -> list[str]:
            ids = []
            for index, message in enumerate(messages):
                message.metadata.__dict__["_message_id"] = f"m{len(self.replies)}-{index}"
                node = message.metadata.dst_node_id
                self.replies[message.metadata.message_id] = client_app(message,
                                                                        self.contexts[node])
                ids.append(message.metadata.message_id)
            return ids

        def pull_messages(self, message_ids: Any) -> list[Any]:
            return [self.replies.pop(i) for i in message_ids]

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
            return self.pull_messages(self.push_messages(messages))

    return {name: run_strategy(name, LocalGrid()) for name in STRATEGIES}


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
