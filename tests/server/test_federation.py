"""Federations over real gRPC on 127.0.0.1, clients in threads of the test process."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import (
    ClientDisconnected,
    ClientReportedError,
    ClientTimeout,
    Code,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    InvalidUpdate,
    Parameters,
    Status,
    ndarrays_to_parameters,
)
from tests.conftest import LocalFederation
from tests.server.recording import RecordingFedAvg

SHAPES = [(3, 2), (2,)]


def initial() -> list[np.ndarray]:
    return [np.zeros(s, dtype=np.float64) for s in SHAPES]


class Honest(fl.client.NumPyClient):
    """Adds its own offset to the global model; trains on ``n`` examples."""

    def __init__(self, offset: float, n: int) -> None:
        self.offset, self.n = offset, n

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return initial()

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return [p + self.offset * (i + 1) for i, p in enumerate(parameters)], self.n, {
            "round": config.get("round", -1)}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return float(sum(p.sum() for p in parameters)), self.n, {"offset": self.offset}


def strategy(n_clients: int, **kwargs: Any) -> RecordingFedAvg:
    return RecordingFedAvg(
        min_fit_clients=n_clients, min_evaluate_clients=n_clients,
        min_available_clients=n_clients,
        initial_parameters=ndarrays_to_parameters(initial()), **kwargs)


def test_fedavg_over_grpc_equals_the_example_weighted_mean(federation: LocalFederation) -> None:
    clients = [Honest(1.0, 10), Honest(2.0, 30), Honest(-1.0, 60)]
    for client in clients:
        federation.start_client(client)
    seen_configs: list[int] = []
    strat = strategy(3, on_fit_config_fn=lambda r: seen_configs.append(r) or {"round": r})
    history = federation.run_server(strat, num_rounds=3)
    federation.join_clients()

    expected = initial()
    total = sum(c.n for c in clients)
    for _ in range(3):
        expected = [sum(c.n * (layer + c.offset * (i + 1)) for c in clients) / total
                    for i, layer in enumerate(expected)]
    for got, want in zip(strat.aggregated[3], expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert seen_configs == [1, 2, 3]
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3]
    assert history.metrics_distributed_fit == {}
    # The distributed loss is the example-weighted mean of what the clients reported.
    final_sum = float(sum(a.sum() for a in strat.aggregated[3]))
    assert history.losses_distributed[-1][1] == pytest.approx(final_sum, rel=1e-6)


def test_initial_parameters_come_from_a_client_when_the_strategy_has_none(
    federation: LocalFederation,
) -> None:
    federation.start_client(Honest(1.0, 5))
    strat = RecordingFedAvg(min_fit_clients=1, min_evaluate_clients=1, min_available_clients=1,
                            evaluate_fn=lambda r, p, c: (float(p[0].sum()), {}))
    history = federation.run_server(strat, num_rounds=1)
    federation.join_clients()
    assert history.losses_centralized == [(0, 0.0), (1, 6.0)]


class Broken(fl.client.Client):
    """A low-level client whose fit answer is broken in a chosen way."""

    def __init__(self, how: str) -> None:
        self.how = how

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        return GetParametersRes(Status(Code.OK, ""), ndarrays_to_parameters(initial()))

    def fit(self, ins: FitIns) -> FitRes:
        ok = Status(Code.OK, "Success")
        if self.how == "raises":
            raise RuntimeError("local disk is full")
        if self.how == "wrong_shape":
            return FitRes(ok, ndarrays_to_parameters([np.zeros((2, 2)), np.zeros(2)]), 10, {})
        if self.how == "nan":
            arrays = initial()
            arrays[0][0, 0] = np.nan
            return FitRes(ok, ndarrays_to_parameters(arrays), 10, {})
        if self.how == "pickled":
            buffer = io.BytesIO()
            np.save(buffer, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
            tensors = [buffer.getvalue(), ndarrays_to_parameters([np.zeros(2)]).tensors[0]]
            return FitRes(ok, Parameters(tensors, "numpy.ndarray"), 10, {})
        if self.how == "negative_count":
            return FitRes(ok, ndarrays_to_parameters(initial()), -5, {})
        raise AssertionError(self.how)


EXPECTED_REASON = {
    "raises": (ClientReportedError, "RuntimeError: local disk is full"),
    "wrong_shape": (InvalidUpdate, "tensor 0 has shape (2, 2), the global model's is (3, 2)"),
    "nan": (InvalidUpdate, "NaN or Inf"),
    "pickled": (InvalidUpdate, "object arrays are pickled"),
    "negative_count": (InvalidUpdate, "num_examples is negative"),
}


@pytest.mark.parametrize("how", sorted(EXPECTED_REASON))
def test_a_bad_client_is_a_failure_with_its_reason_and_the_round_goes_on(
    federation: LocalFederation, how: str
) -> None:
    honest = [Honest(1.0, 10), Honest(3.0, 30)]
    for client in honest:
        federation.start_client(client)
    federation.start_client(Broken(how))
    strat = strategy(3, fraction_evaluate=0.0)
    federation.run_server(strat, num_rounds=2)
    federation.join_clients()

    for server_round in (1, 2):
        failures = strat.fit_failures[server_round]
        assert len(failures) == 1 and len(strat.fit_results[server_round]) == 2
        kind, text = EXPECTED_REASON[how]
        assert isinstance(failures[0], kind) and text in str(failures[0])
    # The aggregate is the honest clients' weighted mean, untouched by the bad one.
    expected = [sum(c.n * (layer + c.offset * (i + 1)) for c in honest) / 40
                for i, layer in enumerate(initial())]
    for got, want in zip(strat.aggregated[1], expected, strict=True):
        np.testing.assert_allclose(got, want)


def test_with_accept_failures_off_a_failure_ends_the_round_without_aggregating(
    federation: LocalFederation,
) -> None:
    federation.start_client(Honest(1.0, 10))
    federation.start_client(Broken("nan"))
    strat = strategy(2, accept_failures=False, fraction_evaluate=0.0,
                     evaluate_fn=lambda r, p, c: (float(p[0].sum()), {}))
    history = federation.run_server(strat, num_rounds=2)
    federation.join_clients()
    assert strat.aggregated == {}
    assert history.losses_centralized == [(0, 0.0), (1, 0.0), (2, 0.0)]


class Slow(Honest):
    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        time.sleep(3.0)
        return super().fit(parameters, config)


def test_round_timeout_bounds_a_slow_client(federation: LocalFederation) -> None:
    federation.start_client(Honest(1.0, 10))
    federation.start_client(Slow(5.0, 10))
    strat = strategy(2, fraction_evaluate=0.0)
    started = time.monotonic()
    federation.run_server(strat, num_rounds=1, round_timeout=1.0)
    assert time.monotonic() - started < 3.0 + 2.0
    federation.join_clients()
    (failure,) = strat.fit_failures[1]
    assert isinstance(failure, ClientTimeout) and "no reply within 1 s" in str(failure)
    assert len(strat.fit_results[1]) == 1


class Vanishes(Honest):
    """Drops its connection in the middle of fit, as a killed process would."""

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        raise SystemExit  # ends the client thread without a reply


def test_a_client_that_disconnects_mid_fit_is_a_failure(federation: LocalFederation) -> None:
    federation.start_client(Honest(1.0, 10))
    federation.start_client(Honest(2.0, 10))
    federation.start_client(Vanishes(0.0, 10))
    strat = strategy(3, fraction_evaluate=0.0)
    federation.run_server(strat, num_rounds=1, round_timeout=20)
    failures = strat.fit_failures[1]
    assert len(failures) == 1 and isinstance(failures[0], ClientDisconnected | ClientReportedError)
    assert len(strat.fit_results[1]) == 2


def test_streaming_fedavg_over_grpc_equals_the_weighted_mean(federation: LocalFederation) -> None:
    clients = [Honest(0.5, 7), Honest(-2.0, 11), Honest(4.0, 2)]
    for client in clients:
        federation.start_client(client)
    seen: dict[int, list[np.ndarray]] = {}

    def evaluate(server_round: int, params: list[np.ndarray], config: dict) -> tuple:
        seen[server_round] = [p.copy() for p in params]
        return 0.0, {}

    strat = fl.server.strategy.FedAvg(
        min_fit_clients=3, min_evaluate_clients=3, min_available_clients=3, evaluate_fn=evaluate,
        initial_parameters=ndarrays_to_parameters(initial()))
    assert strat.fit_accumulator(1, strat.initial_parameters) is not None  # type: ignore[arg-type]
    federation.run_server(strat, num_rounds=2)
    federation.join_clients()
    expected = initial()
    for _ in range(2):
        expected = [sum(c.n * (layer + c.offset * (i + 1)) for c in clients) / 20
                    for i, layer in enumerate(expected)]
    for got, want in zip(seen[2], expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
