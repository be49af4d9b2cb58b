"""A NumPyClient written for Flower that updates the arrays it receives in place.

``--framework flwr`` runs it with ``import flwr as fl``, ``--framework fedsilo`` with
``import fedsilo as fl``; the client class is the same. ``fit`` adds ``--step`` to every
parameter with ``+=``, as hand-written numpy training loops do; ``evaluate`` reports the mean
parameter as its loss.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--framework", choices=["flwr", "fedsilo"], required=True)
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--step", type=float, default=0.5)
    args = parser.parse_args()
    fl: Any = importlib.import_module(args.framework)

    class InPlaceClient(fl.client.NumPyClient):
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return [np.zeros((2, 2)), np.zeros(2)]

        def fit(self, parameters: list[np.ndarray],
                config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
            for layer in parameters:
                layer += args.step
            return parameters, 10, {}

        def evaluate(self, parameters: list[np.ndarray],
                     config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
            return float(np.concatenate([p.ravel() for p in parameters]).mean()), 10, {}

    fl.client.start_numpy_client(server_address=args.server_address, client=InPlaceClient())


if __name__ == "__main__":
    main()
