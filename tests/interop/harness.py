"""Machinery for federations of real processes on 127.0.0.1.

``ProcessGroup`` starts each process in its own session with its output in a log file and
kills whatever is still running when the block ends; ``FedsiloServerThread`` runs
``fedsilo.server.start_server`` beside the test; ``wait_until`` polls a condition against a
deadline instead of sleeping a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.common import parameters_to_ndarrays

HERE = Path(__file__).resolve().parent
SEED_CLIENT = HERE / "seed_client.py"
SEED_SERVER = HERE / "seed_server.py"
FLWR_SERVER = HERE / "flwr_server.py"
FEDSILO_CLIENT = HERE / "fedsilo_client.py"
IN_PLACE_CLIENT = HERE / "in_place_client.py"
WIRE_PROBE = HERE / "wire_probe.py"


def fedsilo_environ() -> dict[str, str]:
    """Environment for processes run with the tests' own interpreter.

    The fedsilo that the tests import comes first on the path, so those processes run the
    same code even when it is not installed (e.g. ``PYTHONPATH=src pytest``).
    """
    package_root = str(Path(fl.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def accepts_connections(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None


@dataclass
class ProcessGroup:
    """Processes of one federation; leaving the block kills their process groups."""

    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Process:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=dict(env), cwd=HERE,
                                     start_new_session=True)
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def wait_all(self, timeout: float) -> dict[str, int]:
        """Exit status of every process; fails with their output if one outlives ``timeout``."""
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{process.name} still runs after {timeout:.0f} s\n"
                                     + self.report()) from None
        return {p.name: p.popen.returncode for p in self.processes}

    def report(self) -> str:
        """Every process's exit status and output, for assertion messages."""
        parts = []
        for p in self.processes:
            status = "running" if p.running() else f"exit {p.popen.returncode}"
            parts.append(f"===== {p.name} ({status}) =====\n{p.output()[-6000:]}")
        return "\n".join(parts)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for process in self.processes:
            if process.running():
                try:
                    os.killpg(process.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.popen.wait(10)


class FedsiloServerThread:
    """``fedsilo.server.start_server`` in a daemon thread; ``join`` returns its History."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.history: fl.server.History | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fedsilo-server", daemon=True)

    def _run(self) -> None:
        try:
            self.history = fl.server.start_server(**self.kwargs)
        except BaseException as exc:  # re-raised by join in the test's thread
            self.error = exc

    def start(self, port: int, timeout: float = 30.0) -> None:
        """Start serving and return once the port accepts connections."""
        self.thread.start()
        wait_until(lambda: accepts_connections(port) or not self.thread.is_alive(), timeout,
                   f"the fedsilo server listening on port {port}")
        if self.error is not None:
            raise self.error

    def join(self, timeout: float) -> fl.server.History:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"start_server did not return within {timeout:.0f} s")
        if self.error is not None:
            raise self.error
        assert self.history is not None
        return self.history


class RecordingFedAvg(fl.server.strategy.FedAvg):
    """FedAvg that keeps what each round received and produced, then aggregates as usual."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.received: dict[int, list[tuple[list[np.ndarray], int]]] = {}
        self.failures: dict[int, list[Any]] = {}
        self.aggregated: dict[int, list[np.ndarray]] = {}

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.received[server_round] = [
            ([a.copy() for a in parameters_to_ndarrays(res.parameters)], res.num_examples)
            for _, res in results
        ]
        self.failures[server_round] = list(failures)
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        if parameters is not None:
            self.aggregated[server_round] = parameters_to_ndarrays(parameters)
        return parameters, metrics


@dataclass
class SeedClientRecord:
    """What one seed-style client got and returned, read back from its ``--record-dir``.

    Rounds are keyed by the ``server_round`` the client found in its config, or by call count
    where the server sent none.
    """

    fits: dict[int, tuple[list[np.ndarray], int]]
    fit_configs: dict[int, dict[str, Any]]
    evaluations: dict[int, tuple[float, int]]
    evaluate_configs: dict[int, dict[str, Any]]

    @classmethod
    def load(cls, record_dir: Path) -> SeedClientRecord:
        record = cls({}, {}, {}, {})
        for path in sorted(record_dir.glob("fit-round*.json")):
            server_round = int(path.stem.removeprefix("fit-round"))
            entry = json.loads(path.read_text())
            with np.load(path.with_suffix(".npz"), allow_pickle=False) as data:
                layers = [data[f"arr_{i}"] for i in range(len(data.files))]
            record.fits[server_round] = (layers, int(entry["num_examples"]))
            record.fit_configs[server_round] = entry["config"]
        for path in sorted(record_dir.glob("evaluate-round*.json")):
            server_round = int(path.stem.removeprefix("evaluate-round"))
            entry = json.loads(path.read_text())
            record.evaluations[server_round] = (float(entry["loss"]), int(entry["num_examples"]))
            record.evaluate_configs[server_round] = entry["config"]
        return record


def weighted_mean(results: Sequence[tuple[Sequence[np.ndarray], int]]) -> list[np.ndarray]:
    """The example-weighted mean of each layer, computed directly in float64."""
    total = sum(n for _, n in results)
    n_layers = len(results[0][0])
    return [sum(np.asarray(layers[i], dtype=np.float64) * n for layers, n in results) / total
            for i in range(n_layers)]


def as_float32(value: float) -> float:
    """``value`` as it arrives after the wire's 32-bit ``float loss`` field."""
    return float(np.float32(value))
