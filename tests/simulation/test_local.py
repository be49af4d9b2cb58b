"""start_simulation on the local process pool: results, failures, replaced workers, state."""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

import fedsilo as fl
import fedsilo.simulation as sim
from fedsilo.common.exceptions import ClientDisconnected, ClientReportedError, ClientTimeout
from fedsilo.server.strategy.strategy import FitAccumulator
from fedsilo.simulation.engine import WorkerStartError
from tests.simulation.clients import (
    N_PARAMS,
    CountingClient,
    LoadsNowhere,
    MisbehavingClient,
    delta_of,
    dyadic_client_fn,
    dyadic_strategy,
    examples_of,
)
from tests.simulation.recording import RecordingStrategy, round_config


def expected_losses(num_clients: int, k: int, rounds: int, seed: int) -> list[tuple[int, float]]:
    """FedAvg over dyadic clients, worked out by hand: the sample, the mean, the loss."""
    rng = random.Random(seed)
    model = np.zeros(N_PARAMS, dtype=np.float32)
    losses = []
    for server_round in range(1, rounds + 1):
        fit_ids = [str(i) for i in rng.sample(range(num_clients), k)]
        total = sum(examples_of(c) for c in fit_ids)
        sums = np.zeros(N_PARAMS, dtype=np.float64)
        for c in fit_ids:
            sums += examples_of(c) * (model + np.float32(delta_of(c))).astype(np.float64)
        model = (sums / total).astype(np.float32)
        eval_ids = [str(i) for i in rng.sample(range(num_clients), k)]
        loss = sum(examples_of(c) * float(model[0] + np.float32(delta_of(c))) for c in eval_ids)
        losses.append((server_round, loss / sum(examples_of(c) for c in eval_ids)))
    return losses


def test_seeded_simulation_matches_fedavg_worked_out_by_hand() -> None:
    history = sim.start_simulation(
        client_fn=dyadic_client_fn, num_clients=40,
        config=fl.server.ServerConfig(num_rounds=3),
        strategy=dyadic_strategy(fraction=0.25, min_clients=2),
        client_manager=sim.VirtualClientManager(seed=7), num_workers=2)
    assert history.losses_distributed == expected_losses(40, 10, 3, seed=7)


def test_without_initial_parameters_a_sampled_client_provides_them() -> None:
    strategy = fl.server.strategy.FedAvg(min_fit_clients=3, min_available_clients=3,
                                         min_evaluate_clients=3)
    history = sim.start_simulation(client_fn=dyadic_client_fn, num_clients=3, num_workers=2,
                                   config=fl.server.ServerConfig(num_rounds=1),
                                   strategy=strategy)
    # Clients 0, 1, 2 add -0.5, -0.25, 0 with 4, 5, 6 examples to the zeros a client gave.
    model = np.float32((4 * -0.5 + 5 * -0.25 + 6 * 0.0) / 15)
    loss = sum(n * float(model + np.float32(d)) for n, d in ((4, -0.5), (5, -0.25), (6, 0.0)))
    assert history.losses_distributed == [(1, loss / 15)]


def test_raising_client_and_failing_client_fn_are_failures_with_their_reason() -> None:
    strategy = RecordingStrategy(min_fit_clients=4, min_available_clients=4,
                                 fraction_evaluate=0.0, on_fit_config_fn=round_config)
    history = sim.start_simulation(
        client_fn=functools.partial(_raising_or_refusing, raise_cid="2", refuse_cid="3"),
        num_clients=4, config=fl.server.ServerConfig(num_rounds=1), strategy=strategy,
        num_workers=2)
    assert history is not None
    failures = {f.cid: f for f in strategy.fit_failures[1]}  # type: ignore[attr-defined]
    assert set(failures) == {"1", "2", "3"}
    assert isinstance(failures["2"], ClientReportedError)
    assert "client 2 has no data" in failures["2"].reason
    assert isinstance(failures["3"], ClientReportedError)
    assert "client_fn('3') raised" in failures["3"].reason and "no such site" in \
        failures["3"].reason
    assert isinstance(failures["1"], ClientReportedError)
    assert "client_fn('1') returned str; return a fedsilo Client or NumPyClient" in \
        failures["1"].reason
    assert set(strategy.fit_metrics[1]) == {"0"}


def _raising_or_refusing(cid: str, *, raise_cid: str, refuse_cid: str) -> fl.client.Client:
    if cid == refuse_cid:
        raise LookupError("no such site")
    if cid == "1":
        return "a client"  # type: ignore[return-value]
    return MisbehavingClient(cid, raise_cid=raise_cid).to_client()


def test_crashed_worker_is_a_failure_and_the_next_round_runs_on_a_fresh_worker(
        tmp_path: Path) -> None:
    pid_file = tmp_path / "crashed.pid"
    strategy = RecordingStrategy(min_fit_clients=6, min_available_clients=6,
                                 fraction_evaluate=0.0, on_fit_config_fn=round_config)
    client_fn = functools.partial(_misbehaving, crash_cid="3", crash_round=1,
                                  pid_file=str(pid_file))
    sim.start_simulation(client_fn=client_fn, num_clients=6,
                         config=fl.server.ServerConfig(num_rounds=2),
                         strategy=strategy, num_workers=2)
    [failure] = strategy.fit_failures[1]
    assert isinstance(failure, ClientDisconnected) and failure.cid == "3"
    assert "worker process died (exit code 3)" in failure.reason
    assert set(strategy.fit_metrics[1]) == {"0", "1", "2", "4", "5"}
    # Round 2: every client trained, none on the dead worker, which is gone.
    crashed_pid = int(pid_file.read_text())
    assert strategy.fit_failures[2] == []
    assert set(strategy.fit_metrics[2]) == {str(i) for i in range(6)}
    round2_pids = {m["pid"] for m in strategy.fit_metrics[2].values()}
    assert crashed_pid not in round2_pids and 1 <= len(round2_pids) <= 2
    assert not psutil.pid_exists(crashed_pid) or \
        psutil.Process(crashed_pid).status() == psutil.STATUS_ZOMBIE


def _misbehaving(cid: str, **kwargs: object) -> fl.client.Client:
    return MisbehavingClient(cid, **kwargs).to_client()  # type: ignore[arg-type]


def test_client_over_its_time_is_a_timeout_and_the_round_goes_on() -> None:
    strategy = RecordingStrategy(min_fit_clients=4, min_available_clients=4,
                                 fraction_evaluate=0.0, on_fit_config_fn=round_config)
    started = time.monotonic()
    sim.start_simulation(
        client_fn=functools.partial(_misbehaving, sleep_cid="1", sleep_s=60.0), num_clients=4,
        config=fl.server.ServerConfig(num_rounds=2, round_timeout=3.0), strategy=strategy,
        num_workers=2)
    assert time.monotonic() - started < 30
    for server_round in (1, 2):
        [failure] = strategy.fit_failures[server_round]
        assert isinstance(failure, ClientTimeout) and failure.cid == "1"
        assert "no reply within 3 s" in failure.reason
        assert set(strategy.fit_metrics[server_round]) == {"0", "2", "3"}


class FoldTimes(fl.server.strategy.FedAvg):
    """FedAvg's streaming aggregation, noting when each client's result is folded in."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.folded: dict[str, float] = {}

    def fit_accumulator(self, server_round: int, parameters: fl.common.Parameters) -> Any:
        found = super().fit_accumulator(server_round, parameters)
        assert found is not None
        inner: FitAccumulator = found
        folded = self.folded

        class Timed(FitAccumulator):
            def add(self, client: Any, res: Any, arrays: Any) -> None:
                folded[client.cid] = time.time()
                inner.add(client, res, arrays)

            def finish(self, results: Any, failures: Any) -> Any:
                return inner.finish(results, failures)

        return Timed()


def test_results_stream_into_the_strategy_as_clients_finish() -> None:
    strategy = FoldTimes(min_fit_clients=6, min_available_clients=6, fraction_evaluate=0.0,
                         on_fit_config_fn=round_config)
    started = time.time()
    sim.start_simulation(
        client_fn=functools.partial(_misbehaving, sleep_cid="5", sleep_s=4.0), num_clients=6,
        config=fl.server.ServerConfig(num_rounds=1), strategy=strategy, num_workers=2)
    slow_done = strategy.folded.pop("5")
    assert slow_done - started >= 4.0 and len(strategy.folded) == 5
    # The fast clients were folded in while the slow one still slept.
    assert max(strategy.folded.values()) < slow_done - 2.0


def test_client_state_is_kept_on_disk_and_loaded_only_when_sampled(tmp_path: Path) -> None:
    strategy = RecordingStrategy(fraction_fit=0.3, min_fit_clients=3, min_available_clients=3,
                                 fraction_evaluate=0.0, on_fit_config_fn=round_config)
    state_dir = tmp_path / "state"
    sim.start_simulation(
        client_fn=lambda cid: CountingClient(cid),  # a lambda: sent with cloudpickle
        num_clients=10, config=fl.server.ServerConfig(num_rounds=4), strategy=strategy,
        client_manager=sim.VirtualClientManager(seed=3), num_workers=2,
        client_state_dir=state_dir)
    seen: dict[str, int] = {}
    for server_round in range(1, 5):
        for cid, metrics in strategy.fit_metrics[server_round].items():
            seen[cid] = seen.get(cid, 0) + 1
            assert metrics["times_trained"] == seen[cid]
    assert max(seen.values()) >= 2  # some client was sampled twice: state was reloaded
    assert {p.stem for p in state_dir.glob("*.npz")} == set(seen)
    store = sim.ClientStateStore(state_dir)
    for cid, times in seen.items():
        state = store.load(cid)
        assert state is not None and int(state["times_trained"]) == times


def test_client_fn_that_no_worker_can_load_fails_the_simulation_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(WorkerStartError, match="could not load client_fn: FileNotFoundError: "
                                               "/nonexistent/model.bin"):
        sim.start_simulation(client_fn=LoadsNowhere(), num_clients=1000, num_workers=2,
                             config=fl.server.ServerConfig(num_rounds=3))
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "give num_clients or clients_ids"),
    ({"num_clients": 3, "clients_ids": ["a", "b"]}, "num_clients is 3 but clients_ids holds 2"),
    ({"clients_ids": ["a", "b", "a"]}, "'a' is listed twice"),
    ({"num_clients": 0}, "num_clients must be a positive int"),
    ({"num_clients": 2, "backend": "dask"}, "backend must be 'local' or 'ray'"),
    ({"num_clients": 2, "client_resources": {"cpus": 1}}, "takes num_cpus and num_gpus"),
    ({"num_clients": 2, "client_resources": {"num_gpus": 1}}, "use backend='ray'"),
])
def test_bad_arguments_get_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sim.start_simulation(client_fn=dyadic_client_fn, **kwargs)  # type: ignore[arg-type]
