"""The seed's ``client.py``: a Flower NumPyClient training a scikit-learn LogisticRegression.

Runs with any Flower from 1.3.0 on, in its own venv. With ``--record-dir`` it also writes, per call,
the config it got and what it returned (``fit-round<r>.json`` and ``.npz``,
``evaluate-round<r>.json``), so a test can compare the server's view with the client's.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import flwr as fl
import numpy as np
import seed_utils as utils
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

Config = dict[str, Any]
FitReturn = tuple[list[np.ndarray], int, dict[str, Any]]
EvaluateReturn = tuple[float, int, dict[str, Any]]


class FlowerClient(fl.client.NumPyClient):
    def __init__(
        self,
        model: LogisticRegression,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        record_dir: Path | None,
    ) -> None:
        self.model = model
        self.x_train, self.y_train = train
        self.x_test, self.y_test = test
        self.record_dir = record_dir
        self.calls = {"fit": 0, "evaluate": 0}

    def _record(self, kind: str, config: Config, **returned: Any) -> int:
        """Write what this call got and returned; return the round it belongs to."""
        self.calls[kind] += 1
        server_round = int(config.get("server_round", self.calls[kind]))
        if self.record_dir is not None:
            path = self.record_dir / f"{kind}-round{server_round}.json"
            # Newer Flower passes a ConfigRecord (a mapping, not a dict): copy it to a dict.
            entry = {"config": dict(config.items()), **returned}
            path.write_text(json.dumps(entry, default=repr))
        return server_round

    def get_parameters(self, config: Config) -> list[np.ndarray]:
        return utils.get_model_parameters(self.model)

    def fit(self, parameters: list[np.ndarray], config: Config) -> FitReturn:
        utils.set_model_params(self.model, parameters)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(self.x_train, self.y_train)
        params = utils.get_model_parameters(self.model)
        server_round = self._record("fit", config, num_examples=len(self.x_train))
        if self.record_dir is not None:
            np.savez(self.record_dir / f"fit-round{server_round}.npz", *params)
        return params, len(self.x_train), {}

    def evaluate(self, parameters: list[np.ndarray], config: Config) -> EvaluateReturn:
        utils.set_model_params(self.model, parameters)
        loss = log_loss(self.y_test, self.model.predict_proba(self.x_test))
        accuracy = self.model.score(self.x_test, self.y_test)
        self._record("evaluate", config, loss=float(loss), num_examples=len(self.x_test),
                     accuracy=float(accuracy))
        return loss, len(self.x_test), {"accuracy": accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--penalty", default="l2")
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--record-dir", type=Path)
    args = parser.parse_args()

    train, test = utils.load_data(args.seed, n_train=args.n_train)
    model = LogisticRegression(penalty=args.penalty, max_iter=args.max_iter, warm_start=True)
    utils.set_initial_params(model)
    if args.record_dir is not None:
        args.record_dir.mkdir(parents=True, exist_ok=True)
    fl.client.start_numpy_client(
        server_address=args.server_address,
        client=FlowerClient(model, train, test, args.record_dir),
    )


if __name__ == "__main__":
    main()
