"""Many concurrent clients: fedsilo's server against Flower's, in one run.

N fedsilo clients (threads in a few processes, one gRPC channel and stream each, the same
client program as tests/reliability/test_scale.py) join, in turn, fedsilo's server and the
newest Flower's server (in its own virtual environment) on 127.0.0.1 and run fit and evaluate
rounds on a small model. For each server the script prints how long it took until every client
had joined, the median round, and the number of clients that answered in each round, then the
ratios, and checks that both servers reached the same model.

    python bench/scale.py                        # 200 clients, 5 rounds
    python bench/scale.py --clients 500 --processes 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWARM = REPO / "tests" / "reliability" / "client_swarm.py"
N_PARAMS = 1000


def serve(impl: str, port: int, n_clients: int, rounds: int, out: str) -> None:
    """The server process: the same FedAvg on either package, timing itself."""
    import numpy as np

    if impl == "fedsilo":
        import fedsilo as fl
    else:
        import flwr as fl  # type: ignore[import-not-found, no-redef, unused-ignore]
    started = time.perf_counter()
    ends: list[float] = []  # evaluate_fn runs once the initial model is set and after each round
    counts: dict[str, list[int]] = {"fit": [], "evaluate": []}
    final: list[np.ndarray] = []

    def count(kind: str):  # type: ignore[no-untyped-def]
        def aggregate(replies):  # type: ignore[no-untyped-def]
            counts[kind].append(len(replies))
            return {}
        return aggregate

    def evaluate(server_round, parameters, config):  # type: ignore[no-untyped-def]
        ends.append(time.perf_counter())
        final[:] = [np.array(parameters[0])]
        return 0.0, {}

    strategy = fl.server.strategy.FedAvg(
        min_fit_clients=n_clients, min_evaluate_clients=n_clients,
        min_available_clients=n_clients, evaluate_fn=evaluate,
        fit_metrics_aggregation_fn=count("fit"),
        evaluate_metrics_aggregation_fn=count("evaluate"),
        initial_parameters=fl.common.ndarrays_to_parameters(
            [np.linspace(0.0, 1.0, N_PARAMS)]))
    fl.server.start_server(server_address=f"127.0.0.1:{port}", strategy=strategy,
                           config=fl.server.ServerConfig(num_rounds=rounds, round_timeout=120))
    np.save(out + ".npy", final[0])
    Path(out).write_text(json.dumps({
        # Round 1 waits for every client to join: from the server's start to its end.
        "first_round_seconds": ends[1] - started,
        "round_seconds": [b - a for a, b in zip(ends[1:], ends[2:], strict=False)],
        "fit_counts": counts["fit"], "evaluate_counts": counts["evaluate"]}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(label: str, python: str, impl: str, args: argparse.Namespace,
        workdir: Path) -> dict[str, object]:
    port, out = free_port(), workdir / f"{impl}.json"
    env = dict(os.environ, PYTHONWARNINGS="ignore", GRPC_VERBOSITY="ERROR",
               FLWR_TELEMETRY_ENABLED="0")
    server = subprocess.Popen([python, __file__, "_serve", impl, str(port), str(args.clients),
                               str(args.rounds), str(out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    per = -(-args.clients // args.processes)
    swarms = [subprocess.Popen([sys.executable, str(SWARM), "--address", f"127.0.0.1:{port}",
                                "--first", str(first),
                                "--count", str(min(per, args.clients - first))],
                               env={**env, "PYTHONPATH": str(REPO / "src")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
              for first in range(0, args.clients, per)]
    try:
        _, err = server.communicate(timeout=600)
        if server.returncode != 0:
            raise RuntimeError(f"{label} server failed:\n{err.decode()[-3000:]}")
        lost = [p for p in swarms if p.wait(timeout=120) != 0]
        if lost:
            raise RuntimeError(f"{label}: client processes failed:\n"
                               + lost[0].communicate()[1].decode()[-3000:])
    finally:
        for proc in [server, *swarms]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    result: dict[str, object] = json.loads(out.read_text())
    result["final"] = str(out) + ".npy"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import numpy as np

    sys.path.insert(0, str(REPO))
    from tests.interop.flower_envs import FLWR_NEWEST, ensure_flower_env

    flower = ensure_flower_env(FLWR_NEWEST)
    peers = [("fedsilo", sys.executable, "fedsilo"),
             (f"flwr {flower.flwr_version}", flower.python, "flwr")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="fedsilo-scale-") as tmp:
        for label, python, impl in peers:
            result = run(label, python, impl, args, Path(tmp))
            results[label] = result
            rounds = result["round_seconds"]
            assert isinstance(rounds, list)
            print(f"{label:<14} {args.clients} clients: round 1 (joining included) "
                  f"{result['first_round_seconds']:.2f} s, median later round "
                  f"{statistics.median(rounds):.3f} s, "
                  f"answers per round fit {result['fit_counts']} "
                  f"evaluate {result['evaluate_counts']}")
        finals = [np.load(str(r["final"])) for r in results.values()]
        same = bool(np.allclose(finals[0], finals[1], rtol=1e-9))
    mine, theirs = results["fedsilo"], results[peers[1][0]]
    round_ratio = (statistics.median(mine["round_seconds"])  # type: ignore[arg-type]
                   / statistics.median(theirs["round_seconds"]))  # type: ignore[arg-type]
    # Round 1 also holds the client processes' start, which the servers do not control: no ratio.
    print(f"fedsilo / Flower, median later round: {round_ratio:.2f}x (below 1: fedsilo faster)")
    print(f"same model on both servers: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        sys.exit(main())
