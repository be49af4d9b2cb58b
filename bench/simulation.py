"""Virtual-client simulation: fedsilo's ``start_simulation`` next to Flower's, in one run.

Each run is a fresh child process: fedsilo's in the dev interpreter, Flower's (1.42 with
Ray, ``flwr[simulation]``) in its own virtual environment, built once by
``tests/interop/flower_envs.py``. The workload is the same on both sides: N registered
clients, 100 sampled per round, a 100,000-parameter float32 model, ``fit`` returns the
parameters plus one, no client evaluation. The driver samples the resident memory of the
child's whole process tree (workers, Ray's daemons and actors included) every 20 ms::

    FEDSILO_TEST_VENVS=/tmp/flwr-venvs python bench/simulation.py
    python bench/simulation.py --clients 1000 --rounds 5 --no-million
    python bench/simulation.py --skip-flower          # fedsilo only

It prints seconds per round (the mean of the rounds after the first, which also pays for
starting workers), clients per second, peak memory, and Flower-over-fedsilo ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
N_PARAMS = 100_000
PER_ROUND = 100


# The child: one simulation, with timings -------------------------------------------------


def child(impl: str, num_clients: int, rounds: int) -> dict[str, Any]:
    """Run one simulation with ``impl`` (fedsilo or flwr); return its round timings."""
    import numpy as np

    if impl == "fedsilo":
        import fedsilo as fl
        import fedsilo.simulation as simulation
    else:
        import flwr as fl  # type: ignore[import-not-found,no-redef]
        import flwr.simulation as simulation  # type: ignore[import-not-found,no-redef]

    round_starts: list[float] = []
    round_ends: list[float] = []

    def on_fit_config(server_round: int) -> dict[str, Any]:
        round_starts.append(time.perf_counter())
        return {}

    def evaluate(server_round: int, parameters: list[Any], config: dict[str, Any]) -> Any:
        round_ends.append(time.perf_counter())
        return 0.0, {"first": float(parameters[0][0])}

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=PER_ROUND / num_clients, fraction_evaluate=0.0,
        min_fit_clients=PER_ROUND, min_available_clients=PER_ROUND,
        on_fit_config_fn=on_fit_config, evaluate_fn=evaluate,
        initial_parameters=fl.common.ndarrays_to_parameters(
            [np.zeros(N_PARAMS, dtype=np.float32)]))
    started = time.perf_counter()
    if impl == "fedsilo":
        history = simulation.start_simulation(
            client_fn=_fedsilo_client, num_clients=num_clients, strategy=strategy,
            config=fl.server.ServerConfig(num_rounds=rounds))
    else:
        history = simulation.start_simulation(
            client_fn=_flower_client, num_clients=num_clients, strategy=strategy,
            config=fl.server.ServerConfig(num_rounds=rounds))
    wall = time.perf_counter() - started
    # evaluate() runs before round 1 and after each round: round r ends at round_ends[r].
    durations = [round_ends[r + 1] - round_starts[r] for r in range(rounds)]
    first = dict(history.metrics_centralized)["first"][-1][1]
    return {"rounds": durations, "wall_s": wall, "final_first_param": first}


class _AddOne:
    """The benchmark client: returns the parameters plus one."""

    def get_parameters(self, config: dict[str, Any]) -> list[Any]:
        import numpy as np

        return [np.zeros(N_PARAMS, dtype=np.float32)]

    def fit(self, parameters: list[Any], config: dict[str, Any]) -> Any:
        return [p + 1 for p in parameters], 1, {}

    def evaluate(self, parameters: list[Any], config: dict[str, Any]) -> Any:
        return 0.0, 1, {}


def _fedsilo_client(cid: str) -> Any:
    import fedsilo as fl

    client = type("AddOneClient", (_AddOne, fl.client.NumPyClient), {})()
    return client.to_client()


def _flower_client(context: Any) -> Any:
    import flwr as fl  # type: ignore[import-not-found]

    client = type("AddOneClient", (_AddOne, fl.client.NumPyClient), {})()
    return client.to_client()


# The driver: start children, watch their memory, print the comparison -------------------


def measure(python: str, impl: str, num_clients: int, rounds: int,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child and sample its process tree's memory until it exits."""
    import psutil

    sys.path.insert(0, str(REPO))
    from tests.simulation.memory import tree_rss

    argv = [python, str(Path(__file__).resolve()), "--child", impl,
            "--clients", str(num_clients), "--rounds", str(rounds)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=REPO)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, tree_rss(root))
        except psutil.Error:
            pass
        time.sleep(0.02)
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{impl} with {num_clients} clients failed "
                           f"({process.returncode}):\n{err[-4000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["peak_rss"] = peak
    steady = result["rounds"][1:] or result["rounds"]
    result["s_per_round"] = sum(steady) / len(steady)
    result["clients_per_s"] = PER_ROUND / result["s_per_round"]
    return result


def line(impl: str, num_clients: int, r: dict[str, Any]) -> str:
    return (f"{impl:8} {num_clients:>9,} clients  {r['s_per_round']:7.3f} s/round  "
            f"{r['clients_per_s']:7.0f} clients/s  first round {r['rounds'][0]:6.2f} s  "
            f"wall {r['wall_s']:6.1f} s  peak tree RSS {r['peak_rss'] / 2**20:6.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("fedsilo", "flwr"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1_000, 100_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--million", action=argparse.BooleanOptionalAction, default=True,
                        help="also run fedsilo with 1,000,000 clients (3 rounds)")
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--flower-million", action="store_true",
                        help="also run Flower with 1,000,000 clients (a proxy object per "
                             "client: minutes and gigabytes)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.clients[0], args.rounds)))
        return

    flower_python = None
    flower_env = None
    if not args.skip_flower:
        sys.path.insert(0, str(REPO / "tests" / "interop"))
        from flower_envs import FLWR_SIMULATION, ensure_flower_env

        flower = ensure_flower_env(FLWR_SIMULATION)
        flower_python, flower_env = flower.python, flower.environ()
        print(f"Flower {flower.flwr_version} (Ray) from {flower.root}")
    print(f"{os.cpu_count()} CPUs; {PER_ROUND} clients per round, {N_PARAMS:,} float32 "
          f"parameters, fit returns parameters + 1; s/round is the mean of rounds 2+")
    for num_clients in args.clients:
        ours = measure(sys.executable, "fedsilo", num_clients, args.rounds)
        print(line("fedsilo", num_clients, ours), flush=True)
        assert ours["final_first_param"] == float(args.rounds), ours
        if flower_python is None:
            continue
        theirs = measure(flower_python, "flwr", num_clients, args.rounds, flower_env)
        print(line("flwr", num_clients, theirs), flush=True)
        print(f"{'':8} {num_clients:>9,} clients  fedsilo is "
              f"{ours['clients_per_s'] / theirs['clients_per_s']:.1f}x the clients/s at "
              f"{ours['peak_rss'] / theirs['peak_rss']:.2f}x the memory "
              f"(wall {theirs['wall_s'] / ours['wall_s']:.1f}x faster)", flush=True)
    if args.million:
        big = measure(sys.executable, "fedsilo", 1_000_000, 3)
        print(line("fedsilo", 1_000_000, big), flush=True)
    if args.flower_million and flower_python is not None:
        theirs = measure(flower_python, "flwr", 1_000_000, 3, flower_env)
        print(line("flwr", 1_000_000, theirs), flush=True)


if __name__ == "__main__":
    main()
