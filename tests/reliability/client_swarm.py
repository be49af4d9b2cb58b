"""Many deterministic clients in one process, one thread and one gRPC channel each.

Client ``i`` trains on ``1 + i % 5`` examples and returns ``0.5 * parameters + i / 100``.
Exits 0 once every client has been let go by the server, 1 if any of them failed.
Run: ``python client_swarm.py --address 127.0.0.1:PORT --first 0 --count 50``.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

import numpy as np

import fedsilo as fl


def examples_of(i: int) -> int:
    return 1 + i % 5


def offset_of(i: int) -> float:
    return i / 100


class SwarmClient(fl.client.NumPyClient):
    def __init__(self, i: int) -> None:
        self.i = i

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(8)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return [0.5 * p + offset_of(self.i) for p in parameters], examples_of(self.i), {
            "client": self.i}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return float(np.abs(parameters[0] - offset_of(self.i)).mean()), examples_of(self.i), {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            fl.client.start_numpy_client(server_address=args.address, client=SwarmClient(i),
                                         max_wait_time=60)
        except BaseException as exc:  # reported below, the process exits 1
            errors.append(f"client {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(args.first, args.first + args.count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        print(error, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
