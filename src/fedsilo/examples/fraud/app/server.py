"""The server side of the fraud app: FedAvg over the sites, scored on the server's test set.

``fedsilo federate`` calls :func:`server_fn` with the run's context: ``run_config`` holds the
app's settings (``penalty``, ``max-iter``, ``num-server-rounds``), ``node_config`` the
server's own: ``data-dir`` (its ``test.csv``, which no site ever sees), ``output-dir`` and
``min-sites``. After every round the global model is also saved as ``model.joblib`` in the
output directory, as the seed's server notebook does at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fedsilo as fl
from fedsilo.examples.fraud.model import new_model, save_model
from fedsilo.examples.fraud.prepare import load_test_set
from fedsilo.examples.fraud.server_side import build_strategy


def server_fn(context: Any) -> tuple[fl.server.strategy.Strategy, fl.server.ServerConfig]:
    """The FedAvg strategy, evaluating on the server's test set, and the number of rounds."""
    run_config, node_config = context.run_config, context.node_config
    X_test, y_test = load_test_set(node_config["data-dir"])
    model = new_model(str(run_config.get("penalty", "l2")), int(run_config.get("max-iter", 10)))
    output = Path(node_config["output-dir"])

    def keep_model(server_round: int, loss: float, metrics: dict[str, float]) -> None:
        output.mkdir(parents=True, exist_ok=True)
        save_model(output / "model.joblib", model)

    strategy = build_strategy(model, X_test, y_test, int(node_config["min-sites"]),
                              on_round=keep_model)
    rounds = int(run_config.get("num-server-rounds", 3))
    return strategy, fl.server.ServerConfig(num_rounds=rounds)
