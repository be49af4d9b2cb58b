"""Server and client programs for the round benchmark, run as separate processes.

    python _peers.py server IMPL PORT N P ROUNDS OUT
    python _peers.py client IMPL PORT INDEX OFFSET

IMPL is `fedsilo` or `flwr`: the same code drives either package, imported as `fl`. A client's
fit returns the parameters it received (plus INDEX + 1 when OFFSET is 1, which makes the weighted
mean a non-trivial function of every client's reply), with INDEX + 1 examples.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def import_impl(impl: str):  # type: ignore[no-untyped-def]
    if impl == "fedsilo":
        import fedsilo as fl
    else:
        import flwr as fl
    return fl


def initial_model(n_params: int):  # type: ignore[no-untyped-def]
    """The starting model every implementation gets: seeded, so final models compare."""
    import numpy as np

    return [np.random.default_rng(7).standard_normal(n_params, dtype=np.float32)]


def peak_rss_kib() -> int:
    """This process's peak resident memory. VmHWM belongs to the process's own address space;
    ru_maxrss can report the launching process's peak, which Linux carries across exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_server(impl: str, port: int, n_clients: int, n_params: int, rounds: int,
               out: str) -> None:
    import numpy as np

    fl = import_impl(impl)
    round_starts: list[float] = []
    finished: list[float] = []
    final: list[np.ndarray] = []

    def on_fit_config(server_round: int) -> dict:
        round_starts.append(time.perf_counter())
        return {}

    def evaluate(server_round: int, parameters: list, config: dict):  # type: ignore[no-untyped-def]
        finished.append(time.perf_counter())
        if server_round == rounds:
            final.append(np.array(parameters[0]))
        return 0.0, {}

    strategy = fl.server.strategy.FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n_clients,
        min_available_clients=n_clients, min_evaluate_clients=n_clients,
        on_fit_config_fn=on_fit_config, evaluate_fn=evaluate,
        initial_parameters=fl.common.ndarrays_to_parameters(initial_model(n_params)))
    fl.server.start_server(server_address=f"127.0.0.1:{port}", strategy=strategy,
                           config=fl.server.ServerConfig(num_rounds=rounds),
                           grpc_max_message_length=2_000_000_000)
    # evaluate() runs at round 0 and after each round: round r ends at finished[r].
    durations = [finished[r + 1] - round_starts[r] for r in range(rounds)]
    peak_kib = peak_rss_kib()
    np.save(out + ".npy", final[0])
    with open(out, "w") as handle:
        json.dump({"round_seconds": durations, "peak_rss_mb": peak_kib / 1024}, handle)


def run_client(impl: str, port: int, index: int, offset: bool) -> None:
    fl = import_impl(impl)
    weight = index + 1

    class Echo(fl.client.NumPyClient):  # type: ignore[name-defined,misc]
        def get_parameters(self, config):  # type: ignore[no-untyped-def]
            raise RuntimeError("the strategy provides initial parameters")

        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            if offset:
                return [p + weight for p in parameters], weight, {}
            return parameters, weight, {}

        def evaluate(self, parameters, config):  # type: ignore[no-untyped-def]
            return 0.0, 1, {}

    fl.client.start_numpy_client(server_address=f"127.0.0.1:{port}", client=Echo(),
                                 grpc_max_message_length=2_000_000_000)


if __name__ == "__main__":
    role, impl, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if role == "server":
        run_server(impl, port, int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    else:
        run_client(impl, port, int(sys.argv[4]), sys.argv[5] == "1")
