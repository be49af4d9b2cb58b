"""Robust aggregation under poisoning: 10 clients, 2 of them attackers, one table.

    python bench/robustness.py [--rounds 10] [--processes] [--seed 0]

Ten sites hold shards of one synthetic binary classification task and train a logistic
regression locally (full-batch gradient descent from the global model). Two sites are
attackers: "sign-flip" sends the global model moved 10 times against its honest update,
"noise" sends the global model plus Gaussian noise of std 100 (a scaled garbage update).
Each strategy runs a federation over real gRPC on 127.0.0.1 (clients in threads, or in
separate processes with --processes); the table shows the global model's test accuracy
after the last round. FedAvg collapses under either attack; Krum, Multi-Krum, FedMedian,
FedTrimmedAvg and Bulyan hold. Bulyan runs with f = 1: with 10 clients its assumption
n >= 4f + 3 allows no more.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.common import NDArrays, ndarrays_to_parameters

N_CLIENTS = 10
N_ATTACKERS = 2
N_FEATURES = 20
ROWS_PER_CLIENT = 200
ATTACKS = ("none", "sign-flip", "noise")


def make_task(seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Ten training shards and a test set of a linearly separable-ish problem."""
    rng = np.random.default_rng(seed)
    w_true = rng.normal(size=N_FEATURES)

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        X = rng.normal(size=(n, N_FEATURES))
        y = (X @ w_true + 0.5 * rng.normal(size=n) > 0).astype(float)
        return X, y

    shards = [rows(ROWS_PER_CLIENT) for _ in range(N_CLIENTS)]
    X_test, y_test = rows(2000)
    return shards, X_test, y_test


def local_train(params: NDArrays, X: np.ndarray, y: np.ndarray, epochs: int = 5,
                lr: float = 0.5) -> NDArrays:
    """Full-batch gradient descent on the mean logistic loss from ``params``."""
    w, b = np.array(params[0], dtype=float), float(params[1][0])
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(X @ w + b)))
        w -= lr * X.T @ (p - y) / len(y)
        b -= lr * float(np.mean(p - y))
    return [w, np.array([b])]


def accuracy(params: NDArrays, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(((X @ params[0] + params[1][0]) > 0) == (y > 0.5)))


class SiteClient(fl.client.NumPyClient):
    """An honest site, or an attacker that poisons its update."""

    def __init__(self, X: np.ndarray, y: np.ndarray, attack: str, seed: int) -> None:
        self.X, self.y, self.attack = X, y, attack
        self.rng = np.random.default_rng(seed)

    def fit(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[NDArrays, int, dict]:
        trained = local_train(parameters, self.X, self.y)
        if self.attack == "sign-flip":
            trained = [g - 10.0 * (t - g) for t, g in zip(trained, parameters, strict=True)]
        elif self.attack == "noise":
            trained = [g + 100.0 * self.rng.normal(size=g.shape) for g in parameters]
        return trained, len(self.y), {}


def strategies(evaluate_fn: Callable[..., Any]) -> dict[str, Callable[[], Any]]:
    S = fl.server.strategy
    common: dict[str, Any] = dict(
        min_fit_clients=N_CLIENTS, min_available_clients=N_CLIENTS, fraction_evaluate=0.0,
        evaluate_fn=evaluate_fn,
        initial_parameters=ndarrays_to_parameters([np.zeros(N_FEATURES), np.zeros(1)]))
    return {
        "FedAvg": lambda: S.FedAvg(**common),
        "Krum (f=2)": lambda: S.Krum(num_malicious_clients=N_ATTACKERS, **common),
        "MultiKrum (f=2)": lambda: S.MultiKrum(num_malicious_clients=N_ATTACKERS, **common),
        "FedMedian": lambda: S.FedMedian(**common),
        "FedTrimmedAvg (beta=0.2)": lambda: S.FedTrimmedAvg(beta=0.2, **common),
        "Bulyan (f=1)": lambda: S.Bulyan(num_malicious_clients=1, **common),
    }


def site_attack(index: int, attack: str) -> str:
    return attack if index < N_ATTACKERS else "none"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_federation(make_strategy: Callable[[], Any], attack: str, rounds: int, seed: int,
                   processes: bool) -> float:
    """One federation over gRPC; the final global model's test accuracy."""
    shards, X_test, y_test = make_task(seed)
    final: list[NDArrays] = []

    def evaluate(server_round: int, params: NDArrays, config: dict) -> tuple[float, dict]:
        if server_round == rounds:
            final.append(params)
        return 0.0, {"accuracy": accuracy(params, X_test, y_test)}

    strategy = make_strategy()
    strategy.evaluate_fn = evaluate
    address = f"127.0.0.1:{free_port()}"
    workers: list[Any] = []
    for i, (X, y) in enumerate(shards):
        kind = site_attack(i, attack)
        if processes:
            workers.append(subprocess.Popen(
                [sys.executable, __file__, "client", address, str(i), kind, str(seed)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        else:
            client = SiteClient(X, y, kind, seed + i)
            thread = threading.Thread(target=fl.client.start_numpy_client, daemon=True,
                                      kwargs=dict(server_address=address, client=client,
                                                  max_wait_time=60))
            thread.start()
            workers.append(thread)
    fl.server.start_server(server_address=address, strategy=strategy,
                           config=fl.server.ServerConfig(num_rounds=rounds, round_timeout=60))
    for worker in workers:
        if processes:
            worker.wait(60)
        else:
            worker.join(60)
    return accuracy(final[0], X_test, y_test)


def run_client(address: str, index: int, attack: str, seed: int) -> None:
    logging.getLogger("fedsilo").setLevel(logging.ERROR)
    shards, _, _ = make_task(seed)
    X, y = shards[index]
    fl.client.start_numpy_client(server_address=address,
                                 client=SiteClient(X, y, attack, seed + index),
                                 max_wait_time=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", action="store_true",
                        help="run each client as its own process (default: threads)")
    args = parser.parse_args()
    logging.getLogger("fedsilo").setLevel(logging.ERROR)
    started = time.perf_counter()
    table: dict[str, dict[str, float]] = {}
    for name, make in strategies(lambda *a: None).items():
        table[name] = {attack: run_federation(make, attack, args.rounds, args.seed,
                                              args.processes) for attack in ATTACKS}
    print(f"\n{N_CLIENTS} clients over gRPC ({'processes' if args.processes else 'threads'}), "
          f"{N_ATTACKERS} attackers, {args.rounds} rounds, seed {args.seed}: "
          "test accuracy of the final global model")
    header = f"{'strategy':<26}" + "".join(f"{a:>12}" for a in ATTACKS)
    print(header)
    print("-" * len(header))
    for name, row in table.items():
        print(f"{name:<26}" + "".join(f"{row[a]:>12.3f}" for a in ATTACKS))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        run_client(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        main()
