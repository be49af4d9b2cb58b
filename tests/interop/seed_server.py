# ruff: noqa: E501
# The seed snippet at the end keeps its own layout, long comments included.
"""The seed's server notebook as a script, run with ``import fedsilo as fl``.

Everything between the two ``seed snippet`` comments is the seed's server snippet, token for
token (the published page lost its indentation, which is restored). ``fit_round`` and ``get_evaluate_fn`` are the two helpers the seed describes;
they also append what they see to ``--record`` (a JSON file) so a test can check the run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import seed_utils as utils
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import fedsilo as fl

EvaluateFn = Callable[[int, list[np.ndarray], dict[str, Any]], tuple[float, dict[str, Any]]]

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--server-address", required=True)
parser.add_argument("--model-dir", required=True)
parser.add_argument("--record", type=Path, required=True)
parser.add_argument("--test-seed", type=int, default=99)
args = parser.parse_args()

_calls: dict[str, list[Any]] = {"fit_round": [], "evaluate": []}


def _record(kind: str, entry: Any) -> None:
    _calls[kind].append(entry)
    args.record.write_text(json.dumps(_calls))


def fit_round(server_round: int) -> dict[str, Any]:
    """Send the round number to the clients."""
    _record("fit_round", server_round)
    return {"server_round": server_round}


def get_evaluate_fn(model: LogisticRegression, X_test: np.ndarray, y_test: np.ndarray) -> EvaluateFn:
    """Evaluate the global parameters on the server's test set."""

    def evaluate(
        server_round: int, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, dict[str, Any]]:
        utils.set_model_params(model, parameters)
        loss = log_loss(y_test, model.predict_proba(X_test))
        accuracy = model.score(X_test, y_test)
        _record("evaluate", {"server_round": server_round, "loss": float(loss),
                             "accuracy": float(accuracy)})
        return float(loss), {"accuracy": float(accuracy)}

    return evaluate


(_, _), (X_test, y_test) = utils.load_data(args.test_seed)

# ----- seed snippet, unchanged -----
"""Initialize the model and federation strategy, then start the server"""
model = LogisticRegression()
utils.set_initial_params(model)
strategy = fl.server.strategy.FedAvg(
    min_available_clients = 1, # Minimum number of clients that need to be connected to the server before a training round can start
    min_fit_clients = 1, # Minimum number of clients to be sampled for the next round
    min_evaluate_clients = 1,
    evaluate_fn = get_evaluate_fn(model, X_test, y_test),
    on_fit_config_fn = fit_round,
)
fl.server.start_server(
    server_address = args.server_address,
    strategy = strategy,
    config = fl.server.ServerConfig(num_rounds=3) # run for 3 rounds
)
utils.save_model(args.model_dir, model)
# ----- end of seed snippet -----
