"""A two-round federation in one process (server and client threads over gRPC on
127.0.0.1), with no logging set up by the program: what fedsilo prints is its own default.

    python log_federation.py PORT [default|handler|logger]

``handler`` turns the console handler down to WARNING first, ``logger`` the logger.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.common.logger import update_console_handler


class Constant(fl.client.NumPyClient):
    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(3, np.float32)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        return [p + 1 for p in parameters], 4, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        return float(parameters[0].sum()), 4, {}


def main() -> None:
    port, mode = int(sys.argv[1]), sys.argv[2]
    if mode == "handler":
        update_console_handler(level=logging.WARNING)
    elif mode == "logger":
        logging.getLogger("fedsilo").setLevel(logging.WARNING)
    strategy = fl.server.strategy.FedAvg(min_fit_clients=1, min_evaluate_clients=1,
                                         min_available_clients=1)
    server = threading.Thread(target=fl.server.start_server, kwargs={
        "server_address": f"127.0.0.1:{port}", "strategy": strategy,
        "config": fl.server.ServerConfig(num_rounds=2)})
    server.start()
    fl.client.start_numpy_client(server_address=f"127.0.0.1:{port}", client=Constant(),
                                 max_wait_time=30)
    server.join()


if __name__ == "__main__":
    main()
