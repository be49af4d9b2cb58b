"""A Flower NumPyClient (run in a Flower venv) that adds 1 to every parameter.

It counts the instructions it gets and writes them to ``--record`` (JSON) when it stops,
so a test can tell that it trained, or that it was never sent what it could not read.
``--train-seconds`` makes each fit take that long without a message (long local training).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import flwr as fl
import numpy as np


class PlusOne(fl.client.NumPyClient):
    def __init__(self, train_seconds: float) -> None:
        self.fits: list[list[int]] = []
        self.train_seconds = train_seconds
        self.windows: list[tuple[float, float]] = []

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(3)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        self.fits.append([int(p.size) for p in parameters])
        started = time.time()
        time.sleep(self.train_seconds)
        self.windows.append((started, time.time()))
        return [p + 1.0 for p in parameters], 10, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return 0.0, 10, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--max-message", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--train-seconds", type=float, default=0.0)
    args = parser.parse_args()
    client = PlusOne(args.train_seconds)
    try:
        fl.client.start_numpy_client(server_address=args.server_address, client=client,
                                     grpc_max_message_length=args.max_message)
    finally:
        args.record.write_text(json.dumps({"fits": client.fits, "windows": client.windows}))


if __name__ == "__main__":
    main()
