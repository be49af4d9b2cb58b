"""One program for both frameworks: a server or a client of Flower's legacy API.

``--framework fedsilo`` or ``--framework flwr`` picks the package; the code is the same for
both (only the imports differ), as a user's would be after changing ``import flwr`` to
``import fedsilo``. The server is a custom ``Server`` whose rounds call ``fit_clients`` and
``evaluate_clients`` (``--custom-server``; Flower's own round loop otherwise), with a
strategy that aggregates by calling ``aggregate`` itself. With ``--send-int N`` the server
puts ``N`` in every config (key ``seed``), and a client in every fit's metrics (key ``big``).
Each process writes what it saw to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np

SHAPES = [(3, 2), (2,)]


def load(framework: str) -> tuple[Any, Any, Any]:
    """The package, its ``server.server`` module and its ``aggregate`` function."""
    fl = importlib.import_module(framework)
    server_module = importlib.import_module(f"{framework}.server.server")
    aggregate = importlib.import_module(f"{framework}.server.strategy.aggregate").aggregate
    return fl, server_module, aggregate


def run_server(args: argparse.Namespace) -> None:
    fl, server_module, aggregate = load(args.framework)

    class MeanOfClients(fl.server.strategy.FedAvg):  # type: ignore[misc, name-defined]
        """FedAvg written out with ``aggregate``, recording what each round received."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.aggregated: dict[int, list[Any]] = {}
            self.fit_metrics: dict[int, list[dict[str, Any]]] = {}
            self.failures: dict[int, list[str]] = {}

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            ordered = sorted(results, key=lambda pair: pair[1].num_examples)
            self.fit_metrics[server_round] = [dict(res.metrics) for _, res in ordered]
            self.failures[server_round] = [repr(f) for f in failures]
            weighted = [(fl.common.parameters_to_ndarrays(res.parameters), res.num_examples)
                        for _, res in ordered]
            mean = aggregate(weighted)
            self.aggregated[server_round] = [[str(a.dtype), a.tolist()] for a in mean]
            return fl.common.ndarrays_to_parameters(mean), {}

    class RoundsByHand(fl.server.Server):  # type: ignore[misc, name-defined]
        """A custom server: each round through fit_clients and evaluate_clients."""

        def fit_round(self, server_round: int, timeout: float | None) -> Any:
            instructions = self.strategy.configure_fit(
                server_round=server_round, parameters=self.parameters,
                client_manager=self._client_manager)
            if not instructions:
                return None
            results, failures = server_module.fit_clients(
                client_instructions=instructions, max_workers=self.max_workers,
                timeout=timeout, group_id=server_round)
            parameters, metrics = self.strategy.aggregate_fit(server_round, results, failures)
            return parameters, metrics, (results, failures)

        def evaluate_round(self, server_round: int, timeout: float | None) -> Any:
            instructions = self.strategy.configure_evaluate(
                server_round=server_round, parameters=self.parameters,
                client_manager=self._client_manager)
            if not instructions:
                return None
            results, failures = server_module.evaluate_clients(
                instructions, max_workers=self.max_workers, timeout=timeout,
                group_id=server_round)
            loss, metrics = self.strategy.aggregate_evaluate(server_round, results, failures)
            return loss, metrics, (results, failures)

    def config(server_round: int) -> dict[str, Any]:
        extra = {} if args.send_int is None else {"seed": args.send_int}
        return {"server_round": server_round, **extra}

    strategy = MeanOfClients(
        min_fit_clients=args.num_clients, min_evaluate_clients=args.num_clients,
        min_available_clients=args.num_clients, on_fit_config_fn=config,
        on_evaluate_config_fn=config,
        initial_parameters=fl.common.ndarrays_to_parameters(
            [np.zeros(shape, dtype=np.float32) for shape in SHAPES]))
    server = None
    if args.custom_server:
        server = RoundsByHand(client_manager=fl.server.SimpleClientManager(),
                              strategy=strategy)
    history = fl.server.start_server(
        server_address=args.address, server=server,
        strategy=strategy if server is None else None,
        config=fl.server.ServerConfig(num_rounds=args.rounds))
    args.out.write_text(json.dumps({
        "aggregated": strategy.aggregated, "fit_metrics": strategy.fit_metrics,
        "failures": strategy.failures, "losses_distributed": history.losses_distributed,
        "custom_server": type(server).__name__ if server is not None else None,
    }))


def run_client(args: argparse.Namespace) -> None:
    fl, _, _ = load(args.framework)
    seen: list[dict[str, Any]] = []

    class Offset(fl.client.NumPyClient):  # type: ignore[misc, name-defined]
        def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
            return [np.zeros(shape, dtype=np.float32) for shape in SHAPES]

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            seen.append({"kind": "fit", "config": dict(config)})
            metrics: dict[str, Any] = {"offset": args.offset}
            if args.send_int is not None:
                metrics["big"] = args.send_int
            return ([p + np.float32(args.offset) for p in parameters], args.num_examples,
                    metrics)

        def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
            seen.append({"kind": "evaluate", "config": dict(config)})
            loss = float(sum(float(p.sum()) for p in parameters)) + args.offset
            return loss, args.num_examples, {}

    try:
        fl.client.start_numpy_client(server_address=args.address, client=Offset())
    finally:
        args.out.write_text(json.dumps(seen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--framework", choices=["fedsilo", "flwr"], required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--num-clients", type=int, default=2)
    parser.add_argument("--custom-server", action="store_true")
    parser.add_argument("--send-int", type=int)
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument("--num-examples", type=int, default=1)
    args = parser.parse_args()
    (run_server if args.role == "server" else run_client)(args)


if __name__ == "__main__":
    main()
