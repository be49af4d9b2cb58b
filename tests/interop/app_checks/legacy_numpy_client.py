"""The quickstart-numpy node written as a legacy Flower NumPyClient (Flower 1.3 and newest),
to join a fedsilo server that runs the app's ServerApp.

    python legacy_numpy_client.py ADDRESS PARTITION_ID CA_PEM
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import flwr as fl
import numpy as np


class QuickstartClient(fl.client.NumPyClient):
    def __init__(self, partition_id: int) -> None:
        self.partition_id = partition_id

    def _target(self, model: list[np.ndarray]) -> list[np.ndarray]:
        return [np.full_like(layer, self.partition_id + 1) for layer in model]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        lr = float(config["lr"])
        pairs = zip(parameters, self._target(parameters), strict=True)
        trained = [m - lr * (m - t) for m, t in pairs]
        return trained, 10 * (self.partition_id + 1), {"train_loss": 0.0}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        pairs = zip(parameters, self._target(parameters), strict=True)
        loss = float(np.mean(np.concatenate([(m - t).ravel() ** 2 for m, t in pairs])))
        return loss, 10 * (self.partition_id + 1), {"eval_loss": loss}


if __name__ == "__main__":
    address, partition, ca = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    fl.client.start_numpy_client(server_address=address, client=QuickstartClient(partition),
                                 root_certificates=ca.read_bytes())
