"""Clients for the simulation tests, importable by worker processes and Ray actors.

Their answers are sums of small dyadic fractions, which float64 adds exactly in any
order: a federation's History then does not depend on the order results arrive in,
and the same seed must give the very same History on every backend and transport.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

import fedsilo as fl
from fedsilo.common import Metrics, NDArrays, Scalar

N_PARAMS = 10


def delta_of(cid: str) -> float:
    """How far client ``cid`` moves the model each round."""
    return 0.25 * (int(cid) % 7) - 0.5


def examples_of(cid: str) -> int:
    return 4 + int(cid) % 5


class DyadicClient(fl.client.NumPyClient):
    """Adds ``delta_of(cid)`` to every parameter; reports its worker's pid."""

    def __init__(self, cid: str) -> None:
        self.cid = cid

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return [np.zeros(N_PARAMS, dtype=np.float32)]

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]
            ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        updated = [(p + delta_of(self.cid)).astype(np.float32) for p in parameters]
        return updated, examples_of(self.cid), {"delta": delta_of(self.cid), "pid": os.getpid()}

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]
                 ) -> tuple[float, int, dict[str, Scalar]]:
        # A float32 loss: the wire carries losses as float32 (Flower's protocol).
        loss = float(parameters[0][0] + np.float32(delta_of(self.cid)))
        return loss, examples_of(self.cid), {"score": float(int(self.cid) % 3)}


def dyadic_client_fn(cid: str) -> fl.client.Client:
    return DyadicClient(cid).to_client()


def exact_weighted_mean(results: list[tuple[int, Metrics]]) -> Metrics:
    """Weighted mean of the numeric metrics except ``pid``, independent of result order."""
    total = sum(n for n, _ in results)
    names = sorted({k for _, m in results for k in m if k != "pid"})
    return {k: math.fsum(n * float(m[k]) for n, m in results) / total for k in names}


def dyadic_strategy(fraction: float, min_clients: int) -> fl.server.strategy.FedAvg:
    initial = fl.common.ndarrays_to_parameters([np.zeros(N_PARAMS, dtype=np.float32)])
    return fl.server.strategy.FedAvg(
        fraction_fit=fraction, fraction_evaluate=fraction, min_fit_clients=min_clients,
        min_evaluate_clients=min_clients, min_available_clients=min_clients,
        initial_parameters=initial, fit_metrics_aggregation_fn=exact_weighted_mean,
        evaluate_metrics_aggregation_fn=exact_weighted_mean)


class MisbehavingClient(DyadicClient):
    """Client ``crash_cid`` ends its worker process in round ``crash_round``, first writing
    the worker's pid to ``pid_file``; client ``raise_cid`` raises; ``sleep_cid`` sleeps
    (in round ``sleep_round`` only, if given)."""

    def __init__(self, cid: str, *, crash_cid: str = "", crash_round: int = 1,
                 pid_file: str = "", raise_cid: str = "", sleep_cid: str = "",
                 sleep_s: float = 30.0, sleep_round: int = 0) -> None:
        super().__init__(cid)
        self.crash_cid, self.crash_round, self.pid_file = crash_cid, crash_round, pid_file
        self.raise_cid, self.sleep_cid, self.sleep_s = raise_cid, sleep_cid, sleep_s
        self.sleep_round = sleep_round  # 0: every round

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]
            ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        if self.cid == self.crash_cid and config.get("server_round") == self.crash_round:
            Path(self.pid_file).write_text(str(os.getpid()))
            os._exit(3)
        if self.cid == self.raise_cid:
            raise RuntimeError(f"client {self.cid} has no data")
        if self.cid == self.sleep_cid and self.sleep_round in (0, config.get("server_round")):
            time.sleep(self.sleep_s)
        return super().fit(parameters, config)


class CountingClient(DyadicClient):
    """Keeps how many times it trained in its on-disk state and reports it."""

    def __init__(self, cid: str) -> None:
        super().__init__(cid)
        self.times_trained = 0

    def get_state(self) -> dict[str, np.ndarray]:
        return {"times_trained": np.array(self.times_trained)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.times_trained = int(state["times_trained"])

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]
            ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        self.times_trained += 1
        updated, n, metrics = super().fit(parameters, config)
        return updated, n, {**metrics, "times_trained": self.times_trained}


class ResourceReportingClient(DyadicClient):
    """Reports the CPUs Ray assigned to its actor and when it trained."""

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]
            ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        import ray

        started = time.time()
        time.sleep(0.3)  # long enough for clients on different actors to overlap
        updated, n, metrics = super().fit(parameters, config)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
        node = ray.get_runtime_context().get_node_id()
        return updated, n, {**metrics, "cpus": float(cpus), "node": str(node),
                            "started": started, "ended": time.time()}


class LoadsNowhere:
    """A client_fn that pickles fine but cannot be loaded in a worker."""

    def __init__(self) -> None:
        self.model_path = "/nonexistent/model.bin"

    def __call__(self, cid: str) -> fl.client.Client:
        return DyadicClient(cid).to_client()

    def __setstate__(self, state: dict[str, str]) -> None:
        raise FileNotFoundError(state["model_path"])
