"""Inputs shared by the strategy tests: random client results and every strategy, built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.common import (
    Code,
    FitRes,
    NDArrays,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from fedsilo.server import ClientProxy, SimpleClientManager
from fedsilo.simulation import InProcessClientProxy

S = fl.server.strategy


class Echo(fl.client.NumPyClient):
    """Returns what it receives; enough to register as a real in-process client."""

    def fit(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[Any, ...]:
        return parameters, 1, {}

    def evaluate(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[Any, ...]:
        return 0.5, 1, {}


def proxy(cid: str) -> ClientProxy:
    return InProcessClientProxy(cid, Echo().to_client())


def model(rng: np.random.Generator, scale: float = 1.0) -> NDArrays:
    return [(scale * rng.normal(size=(3, 4))).astype(np.float32), scale * rng.normal(size=5)]


def fit_results(
    seed: int, n: int = 9, base: NDArrays | None = None, spread: float = 0.3
) -> list[tuple[ClientProxy, FitRes]]:
    """``n`` client results near ``base`` with random example counts and a loss metric."""
    rng = np.random.default_rng(seed)
    base = base if base is not None else model(np.random.default_rng(seed + 1000))
    out = []
    for i in range(n):
        layers = [(b + spread * rng.normal(size=b.shape)).astype(b.dtype) for b in base]
        res = FitRes(Status(Code.OK, "Success"), ndarrays_to_parameters(layers),
                     int(rng.integers(1, 100)),
                     {"loss": float(rng.uniform(0.1, 2.0)), "norm_bit": int(i % 2)})
        out.append((proxy(f"c{i}"), res))
    return out


def arrays(parameters: Parameters | None) -> NDArrays:
    assert parameters is not None
    return parameters_to_ndarrays(parameters)


def initial(seed: int = 1000) -> Parameters:
    return ndarrays_to_parameters(model(np.random.default_rng(seed)))


def configured(strategy: Any, n: int = 9) -> Any:
    """Run configure_fit first, as the server does (wrappers and QFedAvg need it)."""
    manager = SimpleClientManager(seed=0, wait_timeout=1)
    for i in range(n):
        manager.register(proxy(f"c{i}"))
    strategy.configure_fit(1, initial(), manager)
    return strategy


def evaluate_fn(server_round: int, parameters: NDArrays, config: dict[str, Any]) -> Any:
    return float(sum(float(np.sum(np.square(p))) for p in parameters)) / 10, {}


def dp(cls: type, **kwargs: Any) -> Callable[..., Any]:
    def build(**inner: Any) -> Any:
        return cls(S.FedAvg(**inner), noise_multiplier=0.5, num_sampled_clients=9,
                   seed=3, **kwargs)
    return build


# name -> (factory taking FedAvg's keyword arguments, streams?)
STRATEGIES: dict[str, tuple[Callable[..., Any], bool]] = {
    "FedAvg": (lambda **kw: S.FedAvg(**kw), True),
    "FedAvgM": (lambda **kw: S.FedAvgM(server_momentum=0.9, server_learning_rate=0.7,
                                       **kw), True),
    "FedProx": (lambda **kw: S.FedProx(proximal_mu=0.1, **kw), True),
    "FedOpt": (lambda **kw: S.FedOpt(**{"initial_parameters": initial(), **kw}), True),
    "FedAdagrad": (lambda **kw: S.FedAdagrad(**{"initial_parameters": initial(), **kw}), True),
    "FedAdam": (lambda **kw: S.FedAdam(**{"initial_parameters": initial(), **kw}), True),
    "FedYogi": (lambda **kw: S.FedYogi(**{"initial_parameters": initial(), **kw}), True),
    "QFedAvg": (lambda **kw: S.QFedAvg(**{"evaluate_fn": evaluate_fn, **kw}), False),
    "FaultTolerantFedAvg": (lambda **kw: S.FaultTolerantFedAvg(
        **{k: v for k, v in kw.items() if k != "accept_failures"}), True),
    "FedMedian": (lambda **kw: S.FedMedian(**kw), False),
    "FedTrimmedAvg": (lambda **kw: S.FedTrimmedAvg(beta=0.2, **kw), False),
    "Krum": (lambda **kw: S.Krum(num_malicious_clients=2, **kw), False),
    "MultiKrum": (lambda **kw: S.MultiKrum(num_malicious_clients=2, num_clients_to_keep=4,
                                           **kw), False),
    "Bulyan": (lambda **kw: S.Bulyan(num_malicious_clients=1, **kw), False),
    "DifferentialPrivacyServerSideFixedClipping": (
        dp(S.DifferentialPrivacyServerSideFixedClipping, clipping_norm=1.0), True),
    "DifferentialPrivacyClientSideFixedClipping": (
        dp(S.DifferentialPrivacyClientSideFixedClipping, clipping_norm=1.0), True),
    "DifferentialPrivacyServerSideAdaptiveClipping": (
        dp(S.DifferentialPrivacyServerSideAdaptiveClipping), True),
    "DifferentialPrivacyClientSideAdaptiveClipping": (
        dp(S.DifferentialPrivacyClientSideAdaptiveClipping), True),
}
