"""Differential privacy: clipping bounds, noise scale, norm adaptation, the accountant
against published values, and epsilon in the History and the log."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

import fedsilo as fl
from fedsilo.client.mod import AdaptiveClippingClient, FixedClippingClient
from fedsilo.common import (
    Code,
    FitIns,
    FitRes,
    NDArrays,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from fedsilo.common.clipping import l2_norm
from fedsilo.server import Server, SimpleClientManager
from fedsilo.server.strategy.privacy import (
    DEFAULT_ORDERS,
    RdpAccountant,
    epsilon_from_rdp,
    sampled_gaussian_rdp,
)
from fedsilo.simulation import InProcessClientProxy
from tests.conftest import LocalFederation
from tests.server.strategy.helpers import arrays, configured, fit_results, initial, proxy

S = fl.server.strategy


class Recording(S.FedAvg):
    """Keeps what the wrapper handed to the wrapped strategy."""

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self.seen = [parameters_to_ndarrays(res.parameters) for _, res in results]
        return super().aggregate_fit(server_round, results, failures)


def test_server_side_clipping_bounds_every_update_norm() -> None:
    inner = Recording()
    wrapper = configured(S.DifferentialPrivacyServerSideFixedClipping(
        inner, noise_multiplier=0.0, clipping_norm=0.5, num_sampled_clients=9))
    current = arrays(initial())
    results = fit_results(4, base=current, spread=0.3)
    originals = [parameters_to_ndarrays(res.parameters) for _, res in results]
    wrapper.aggregate_fit(1, results, [])
    for before, after in zip(originals, inner.seen, strict=True):
        raw = l2_norm([b - c for b, c in zip(before, current, strict=True)])
        clipped = l2_norm([a - c for a, c in zip(after, current, strict=True)])
        assert raw > 0.5  # these updates all needed clipping
        assert clipped == pytest.approx(0.5, rel=1e-5)
        # Clipping scales the update; it does not change its direction.
        cosine = sum(float(np.vdot(a - c, b - c)) for a, b, c in zip(after, before, current,
                                                                     strict=True))
        assert cosine / (clipped * raw) == pytest.approx(1.0, rel=1e-5)
    small = fit_results(4, base=current, spread=1e-3)
    kept = [parameters_to_ndarrays(res.parameters) for _, res in small]
    configured(S.DifferentialPrivacyServerSideFixedClipping(
        inner, noise_multiplier=0.0, clipping_norm=0.5, num_sampled_clients=9)
    ).aggregate_fit(1, small, [])
    for want, got in zip(kept, inner.seen, strict=True):
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


class Trainer(fl.client.NumPyClient):
    def __init__(self, step: float) -> None:
        self.step = step

    def fit(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[Any, ...]:
        return [p + self.step for p in parameters], 10, {"seen_norm": config["clipping_norm"]}


@pytest.mark.parametrize("wrapper", [FixedClippingClient, AdaptiveClippingClient])
def test_client_side_clipping_bounds_the_update_it_sends(wrapper: type) -> None:
    received: NDArrays = [np.zeros((10, 10), np.float32), np.zeros(4)]
    ins = FitIns(ndarrays_to_parameters(received), {"clipping_norm": 0.2})
    far = wrapper(Trainer(1.0)).fit(ins)
    sent = parameters_to_ndarrays(far.parameters)
    assert l2_norm(sent) == pytest.approx(0.2, rel=1e-5) and sent[0].dtype == np.float32
    near = wrapper(Trainer(1e-3)).fit(ins)
    assert l2_norm(parameters_to_ndarrays(near.parameters)) == pytest.approx(
        1e-3 * math.sqrt(104), rel=1e-4)
    if wrapper is AdaptiveClippingClient:
        assert far.metrics["norm_bit"] == 1 and near.metrics["norm_bit"] == 0
    else:
        assert "norm_bit" not in far.metrics
    with pytest.raises(fl.common.ClientReturnError, match="clipping_norm"):
        wrapper(Trainer(1.0)).fit(FitIns(ins.parameters, {}))


def test_noise_has_the_configured_scale() -> None:
    # Every client returns the global model, so the aggregate is the model plus the noise
    # alone: N(0, (z C / m)^2) per coordinate. z = 1.5, C = 2, m = 6 -> std 0.5.
    current = [np.zeros(40_000, np.float64)]
    results = [(proxy(f"c{i}"), FitRes(Status(Code.OK, ""), ndarrays_to_parameters(current),
                                       10, {})) for i in range(6)]
    wrapper = S.DifferentialPrivacyServerSideFixedClipping(
        S.FedAvg(), noise_multiplier=1.5, clipping_norm=2.0, num_sampled_clients=6, seed=7)
    manager = SimpleClientManager(seed=0, wait_timeout=1)
    for client, _ in results:
        manager.register(client)
    wrapper.configure_fit(1, ndarrays_to_parameters(current), manager)
    noise = arrays(wrapper.aggregate_fit(1, results, [])[0])[0]
    expected = 1.5 * 2.0 / 6
    # The sample std of n normal draws has relative standard error 1 / sqrt(2n) ~ 0.35%.
    assert np.std(noise) == pytest.approx(expected, rel=0.02)
    assert abs(np.mean(noise)) < 5 * expected / math.sqrt(noise.size)
    assert stats.kstest(noise / expected, "norm").pvalue > 1e-3
    # Ten times the multiplier: ten times the spread (the test can tell scales apart).
    louder = S.DifferentialPrivacyServerSideFixedClipping(
        S.FedAvg(), noise_multiplier=15.0, clipping_norm=2.0, num_sampled_clients=6, seed=8)
    louder.configure_fit(1, ndarrays_to_parameters(current), manager)
    assert np.std(arrays(louder.aggregate_fit(1, results, [])[0])[0]) == pytest.approx(
        10 * expected, rel=0.02)


def test_adaptive_clipping_moves_the_norm_toward_the_target_quantile() -> None:
    # All updates exceed C (fraction clipped 1), target 0.5, lr 0.2, no noise:
    # C grows by exp(0.2 * 0.5) each round.
    wrapper = configured(S.DifferentialPrivacyServerSideAdaptiveClipping(
        S.FedAvg(), noise_multiplier=0.0, num_sampled_clients=9, initial_clipping_norm=0.1))
    for server_round in (1, 2, 3):
        wrapper.aggregate_fit(server_round, fit_results(server_round, base=arrays(initial())),
                              [])
        assert wrapper.clipping_norm == pytest.approx(0.1 * math.exp(0.1 * server_round))


# The accountant ------------------------------------------------------------------------------


def test_rdp_of_the_full_batch_gaussian_is_alpha_over_two_sigma_squared() -> None:
    got = sampled_gaussian_rdp(1.0, 2.0, 3, [2.0, 7.5, 32.0])
    np.testing.assert_allclose(got, [3 * a / (2 * 4.0) for a in (2.0, 7.5, 32.0)])
    assert list(sampled_gaussian_rdp(0.0, 2.0, 3, [2.0])) == [0.0]


def test_rdp_matches_the_published_sampled_gaussian_value() -> None:
    # Mironov, Talwar, Zhang (2019), as tabulated in TensorFlow Privacy's accountant tests:
    # q = 0.1, sigma = 2, 10 steps, order 5 -> 0.07737.
    assert sampled_gaussian_rdp(0.1, 2.0, 10, [5.0])[0] == pytest.approx(0.07737, abs=5e-6)


def test_epsilon_matches_abadi_et_al() -> None:
    # Abadi et al. (2016), Sec. 3.1: q = 0.01, sigma = 4, delta = 1e-5, T = 10000 steps
    # gives epsilon ~ 1.26 with the moments accountant (the classical RDP conversion).
    rdp = sampled_gaussian_rdp(0.01, 4.0, 10_000, DEFAULT_ORDERS)
    epsilon, order = epsilon_from_rdp(DEFAULT_ORDERS, rdp, 1e-5, conversion="classic")
    assert epsilon == pytest.approx(1.26, abs=0.005)
    assert order == 20.0


@pytest.mark.parametrize(("q", "sigma", "steps", "delta", "reference"), [
    # Reference values from Google's dp-accounting 0.6.0 (RdpAccountant, Poisson-sampled
    # Gaussian), which converts with the same Canonne-Kamath-Steinke bound.
    (0.01, 4.0, 10_000, 1e-5, 1.0354900660362436),
    (256 / 60_000, 1.1, 14_062, 1e-5, 2.5965558697943036),
    (1.0, 2.0, 10, 1e-5, 8.079406222420491),
])
def test_epsilon_matches_an_independent_implementation(
    q: float, sigma: float, steps: int, delta: float, reference: float
) -> None:
    accountant = RdpAccountant()
    accountant.step(noise_multiplier=sigma, sampling_rate=q, steps=steps)
    assert accountant.epsilon(delta) == pytest.approx(reference, rel=1e-6)


def test_accountant_state_restores_the_same_epsilon() -> None:
    accountant = RdpAccountant()
    accountant.step(noise_multiplier=1.0, sampling_rate=0.1, steps=5)
    accountant.step(noise_multiplier=2.0, sampling_rate=0.3)
    restored = RdpAccountant()
    restored.load_state_dict(accountant.state_dict())
    assert restored.epsilon(1e-5) == accountant.epsilon(1e-5) > 0


# Epsilon reported per round ---------------------------------------------------------------


class Shift(fl.client.NumPyClient):
    def fit(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[Any, ...]:
        return [p + 0.5 for p in parameters], 10, {}


def test_epsilon_goes_into_history_and_log_every_round(caplog: pytest.LogCaptureFixture) -> None:
    manager = SimpleClientManager(seed=0)
    for i in range(10):
        manager.register(InProcessClientProxy(f"c{i}", Shift().to_client()))
    inner = S.FedAvg(fraction_fit=0.5, min_fit_clients=5, min_available_clients=10,
                     fraction_evaluate=0.0, initial_parameters=initial())
    strategy = S.DifferentialPrivacyServerSideFixedClipping(
        inner, noise_multiplier=1.2, clipping_norm=1.0, num_sampled_clients=5,
        target_delta=1e-5, seed=0)
    with caplog.at_level(logging.INFO, logger="fedsilo.server"):
        history, _ = Server(client_manager=manager, strategy=strategy).fit(3, timeout=10)
    rows = history.metrics_distributed_fit["dp_epsilon"]
    assert [r for r, _ in rows] == [1, 2, 3]
    epsilons = [float(e) for _, e in rows]
    assert 0 < epsilons[0] < epsilons[1] < epsilons[2]
    # Sampling 5 of 10 with z = 1.2 for 3 rounds, accounted independently of the wrapper.
    rdp = sampled_gaussian_rdp(0.5, 1.2, 3, DEFAULT_ORDERS)
    assert epsilons[2] == pytest.approx(epsilon_from_rdp(DEFAULT_ORDERS, rdp, 1e-5)[0])
    assert history.metrics_distributed_fit["dp_delta"][0][1] == 1e-5
    logged = [r.getMessage() for r in caplog.records if "privacy spent" in r.getMessage()]
    assert len(logged) == 3 and f"epsilon {epsilons[2]:.4f}" in logged[2]
    assert history.to_dict()["metrics_distributed_fit"]["dp_epsilon"][2] == [3, epsilons[2]]


@pytest.mark.slow
def test_client_side_adaptive_clipping_over_grpc(federation: LocalFederation) -> None:
    """Real gRPC: clients clip and report norm bits; the server adapts C and adds noise."""
    for _ in range(3):
        federation.start_client(AdaptiveClippingClient(Shift()))
    inner = S.FedAvg(min_fit_clients=3, min_available_clients=3, fraction_evaluate=0.0,
                     initial_parameters=ndarrays_to_parameters([np.zeros(50)]))
    strategy = S.DifferentialPrivacyClientSideAdaptiveClipping(
        inner, noise_multiplier=0.1, num_sampled_clients=3, initial_clipping_norm=0.5,
        clipped_count_stddev=1.0, seed=1)
    history = federation.run_server(strategy, num_rounds=2)
    federation.join_clients()
    # Every update (norm 0.5 * sqrt(50) ~ 3.5) exceeds C, so C rises from 0.5.
    assert strategy.clipping_norm > 0.5
    assert len(history.metrics_distributed_fit["dp_epsilon"]) == 2


def test_adaptive_clipping_norm_settles_at_the_target_quantile_of_update_norms() -> None:
    # Update norms 1..9; target 0.5 clipped -> C settles near the median norm, 5.
    current = [np.zeros(3)]
    results = [(proxy(f"c{k}"), FitRes(Status(Code.OK, ""), ndarrays_to_parameters(
        [np.array([k + 1.0, 0.0, 0.0])]), 1, {})) for k in range(9)]
    wrapper = S.DifferentialPrivacyServerSideAdaptiveClipping(
        S.FedAvg(), noise_multiplier=0.0, num_sampled_clients=9, initial_clipping_norm=0.5,
        clip_norm_lr=0.2)
    wrapper.current_round_params = current
    norms = []
    for server_round in range(1, 81):
        wrapper.aggregate_fit(server_round, results, [])
        norms.append(wrapper.clipping_norm)
    assert 4.0 <= min(norms[-20:]) and max(norms[-20:]) <= 6.0
