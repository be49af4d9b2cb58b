"""FedAvgAndroid, the deprecated DPFedAvg wrappers and FedXgbNnAvg: Flower's behaviour."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.common import (
    Code,
    FitIns,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from fedsilo.server import SimpleClientManager
from fedsilo.server.strategy import (
    DPFedAvgAdaptive,
    DPFedAvgFixed,
    FedAvg,
    FedAvgAndroid,
    FedXgbNnAvg,
)
from fedsilo.simulation import InProcessClientProxy
from tests.conftest import LocalFederation

OK = Status(Code.OK, "")


class AndroidLike(fl.client.Client):
    """Speaks the Android format: raw float32 bytes, tensor type ``numpy.nda``."""

    def __init__(self, offset: float, examples: int) -> None:
        self.offset, self.examples = offset, examples
        self.received: list[str] = []

    def fit(self, ins: FitIns) -> FitRes:
        self.received.append(ins.parameters.tensor_type)
        layers = [np.frombuffer(t, dtype=np.float32) + np.float32(self.offset)
                  for t in ins.parameters.tensors]
        return FitRes(OK, Parameters([a.tobytes() for a in layers], "numpy.nda"),
                      self.examples, {})


def android(values: list[list[float]]) -> Parameters:
    return FedAvgAndroid().ndarrays_to_parameters([np.array(v, np.float32) for v in values])


@pytest.mark.timeout(120)
def test_fedavg_android_averages_raw_float32_models_over_grpc(
    federation: LocalFederation
) -> None:
    strategy = FedAvgAndroid(min_fit_clients=2, min_available_clients=2, fraction_evaluate=0.0,
                             initial_parameters=android([[0.0, 1.0], [2.0]]))
    clients = [AndroidLike(1.0, 1), AndroidLike(4.0, 3)]
    for client in clients:
        federation.start_client(client)
    server = fl.server.Server(client_manager=SimpleClientManager(), strategy=strategy)
    federation.run_server(strategy, num_rounds=2, server=server)
    federation.join_clients()
    # Both rounds sent the Android format, and each moved the model by (1*1 + 4*3) / 4.
    assert all(client.received == ["numpy.nda", "numpy.nda"] for client in clients)
    assert server.parameters.tensor_type == "numpy.nda"
    final = strategy.parameters_to_ndarrays(server.parameters)
    assert [layer.tolist() for layer in final] == [[6.5, 7.5], [8.5]]


def test_fedavg_android_keeps_its_format_and_flowers_methods() -> None:
    strategy = FedAvgAndroid()
    tensor = strategy.ndarray_to_bytes(np.array([1.5, -2.0], np.float32))
    assert tensor == np.array([1.5, -2.0], np.float32).tobytes()
    assert strategy.bytes_to_ndarray(tensor).tolist() == [1.5, -2.0]
    results = [(None, FitRes(OK, android([[1.0, 2.0]]), 1, {})),
               (None, FitRes(OK, android([[3.0, 6.0]]), 3, {}))]
    parameters, metrics = strategy.aggregate_fit(1, results, [])  # type: ignore[arg-type]
    assert parameters is not None and parameters.tensor_type == "numpy.nda" and metrics == {}
    assert strategy.parameters_to_ndarrays(parameters)[0].tolist() == [2.5, 5.0]
    assert repr(strategy) == "FedAvg(accept_failures=True)"


class Sampled(SimpleClientManager):
    """Two registered in-process clients; sampling returns both."""

    def __init__(self) -> None:
        super().__init__()
        for cid in ("a", "b"):
            self.register(InProcessClientProxy(cid, fl.client.Client()))


def fit_results(updates: list[list[float]], counts: list[int],
                metrics: list[dict[str, Any]] | None = None) -> list[Any]:
    metrics = metrics or [{} for _ in updates]
    return [(InProcessClientProxy(str(i), fl.client.Client()),
             FitRes(OK, ndarrays_to_parameters([np.array(u)]), n, m))
            for i, (u, n, m) in enumerate(zip(updates, counts, metrics, strict=True))]


@pytest.mark.parametrize("make", [
    lambda: DPFedAvgFixed(FedAvg(), num_sampled_clients=2, clip_norm=1.0),
    lambda: DPFedAvgAdaptive(FedAvg(), num_sampled_clients=40),
], ids=["fixed", "adaptive"])
def test_the_deprecated_wrappers_log_flowers_warning(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fedsilo"):
        strategy = make()
    name = type(strategy).__name__
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"DEPRECATED FEATURE: `{name}` wrapper") and
               "will be removed" in m for m in warnings), warnings


def test_dpfedavg_fixed_configures_clipping_and_averages_unweighted_noised_updates() -> None:
    strategy = DPFedAvgFixed(FedAvg(), num_sampled_clients=2, clip_norm=2.0,
                             noise_multiplier=0.0, server_side_noising=False)
    instructions = strategy.configure_fit(1, ndarrays_to_parameters([np.zeros(2)]), Sampled())
    assert [ins.config for _, ins in instructions] == [
        {"dpfedavg_clip_norm": 2.0, "dpfedavg_noise_stddev": 0.0}] * 2
    # Without noise: the plain mean, each client counted once whatever its examples.
    parameters, _ = strategy.aggregate_fit(1, fit_results([[1.0, 0.0], [3.0, 4.0]], [1, 99]),
                                           [])
    assert parameters is not None
    assert parameters_to_ndarrays(parameters)[0].tolist() == [2.0, 2.0]
    assert strategy.aggregate_fit(1, fit_results([[1.0]], [1]), [RuntimeError("x")]) == (None,
                                                                                        {})


def test_dpfedavg_fixed_noise_has_stddev_z_c_over_sqrt_m() -> None:
    strategy = DPFedAvgFixed(FedAvg(), num_sampled_clients=4, clip_norm=2.0,
                             noise_multiplier=1.5)
    assert strategy.noise_stddev() == pytest.approx(1.5 * 2.0 / 2.0)
    strategy.rng_ = np.random.default_rng(0)
    parameters, _ = strategy.aggregate_fit(1, fit_results([[0.0] * 200_000], [5]), [])
    assert parameters is not None
    noise = parameters_to_ndarrays(parameters)[0]
    assert abs(float(noise.mean())) < 0.02 and float(noise.std()) == pytest.approx(1.5, rel=0.01)


def test_dpfedavg_adaptive_moves_the_clip_norm_towards_the_target_quantile() -> None:
    strategy = DPFedAvgAdaptive(FedAvg(), num_sampled_clients=4, init_clip_norm=1.0,
                                noise_multiplier=0.0, clip_norm_lr=0.2,
                                clip_norm_target_quantile=0.5)
    instructions = strategy.configure_fit(1, ndarrays_to_parameters([np.zeros(1)]), Sampled())
    assert all(ins.config["dpfedavg_adaptive_clip_enabled"] is True for _, ins in instructions)
    # 3 of 4 updates within C (norm bit set): C <- C exp(-lr (3/4 - 1/2)).
    bits = [{"dpfedavg_norm_bit": b} for b in (True, True, True, False)]
    strategy.aggregate_fit(1, fit_results([[0.0]] * 4, [1] * 4, bits), [])
    assert strategy.clip_norm == pytest.approx(math.exp(-0.2 * 0.25))
    with pytest.raises(KeyError, match="dpfedavg_norm_bit"):
        strategy.aggregate_fit(2, fit_results([[0.0]], [1]), [])


def test_dpfedavg_adaptive_splits_the_noise_as_flower() -> None:
    strategy = DPFedAvgAdaptive(FedAvg(), num_sampled_clients=40, noise_multiplier=1.0)
    # sigma_b = m / 20 = 2; z_delta = (1 - (2 * 2)^-2)^(-1/2)
    assert strategy.clip_count_stddev == 2.0
    assert strategy.noise_multiplier == pytest.approx((1 - 4.0 ** -2) ** -0.5)


def test_fedxgb_nn_avg_averages_networks_and_collects_trees(
    caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fedsilo"):
        strategy = FedXgbNnAvg(min_fit_clients=1, min_available_clients=1)
    assert any("`FedXgbNnAvg` strategy" in r.getMessage() for r in caplog.records)
    pairs = [[FitRes(OK, ndarrays_to_parameters([np.array([1.0, 3.0])]), 1, {}), "trees-a"],
             [FitRes(OK, ndarrays_to_parameters([np.array([3.0, 7.0])]), 3, {}), "trees-b"]]
    results = [(None, FitRes(OK, pair, n, {}))  # type: ignore[arg-type]
               for pair, n in zip(pairs, (1, 3), strict=True)]
    (network, trees), _ = strategy.aggregate_fit(1, results, [])  # type: ignore[arg-type]
    assert parameters_to_ndarrays(network)[0].tolist() == [2.5, 6.0]
    assert trees == ["trees-a", "trees-b"]
