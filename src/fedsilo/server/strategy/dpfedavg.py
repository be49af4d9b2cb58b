"""DPFedAvgFixed and DPFedAvgAdaptive: Flower's first DP wrappers, deprecated there too.

They are kept so code written for them runs, with the warning Flower logs when one is made.
New code uses the ``DifferentialPrivacy*Clipping`` wrappers, which stream, account the
privacy spent and clip on the server when asked to.

As in Flower: the clients (which read ``dpfedavg_clip_norm`` from the fit config) send
clipped model updates; the server noises each update with N(0, (z C / sqrt(m))^2) per
coordinate, counts every client once (unweighted, as McMahan et al., 2018) and lets the
wrapped strategy aggregate. A round with any failure is refused. The adaptive variant also
moves ``C`` towards the target quantile of update norms from the clients'
``dpfedavg_norm_bit`` fit metrics (Andrew et al., 2021).
"""

from __future__ import annotations

import numpy as np

from fedsilo.common.logger import warn_deprecated_feature
from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import (
    FitIns,
    FitRes,
    Parameters,
    Scalar,
)
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.aggregate import (
    adaptive_clip_norm_step,
    adaptive_noise_split,
    add_gaussian_noise,
)
from fedsilo.server.strategy.strategy import Strategy, WrappingStrategy

__all__ = ["DPFedAvgAdaptive", "DPFedAvgFixed"]

class DPFedAvgFixed(WrappingStrategy):
    """Wraps ``strategy`` for DP-FedAvg with a fixed clipping norm (deprecated).

    Parameters
    ----------
    strategy
        The strategy that aggregates the noised updates.
    num_sampled_clients
        ``m``, the clients sampled each round.
    clip_norm
        ``C``, the norm each client clips its update to; positive.
    noise_multiplier
        ``z``; non-negative.
    server_side_noising
        False also sends ``dpfedavg_noise_stddev`` (``z C / sqrt(m)``) to the clients.
    """

    def __init__(
        self,
        strategy: Strategy,
        num_sampled_clients: int,
        clip_norm: float,
        noise_multiplier: float = 1,
        server_side_noising: bool = True,
    ) -> None:
        warn_deprecated_feature("`DPFedAvgFixed` wrapper")
        if clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive, got {clip_norm}")
        if noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be non-negative, got {noise_multiplier}")
        self.strategy = strategy
        self.num_sampled_clients = num_sampled_clients
        self.clip_norm = clip_norm
        self.noise_multiplier = noise_multiplier
        self.server_side_noising = server_side_noising
        self.rng_ = np.random.default_rng()

    def __repr__(self) -> str:
        return "Strategy with DP with Fixed Clipping enabled."

    def noise_stddev(self) -> float:
        """``z C / sqrt(m)``: the noise added to each client's update."""
        return float(self.noise_multiplier * self.clip_norm / self.num_sampled_clients ** 0.5)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        extra: dict[str, Scalar] = {"dpfedavg_clip_norm": self.clip_norm}
        if not self.server_side_noising:
            extra["dpfedavg_noise_stddev"] = self.noise_stddev()
        instructions = self.strategy.configure_fit(server_round, parameters, client_manager)
        for _, ins in instructions:
            ins.config.update(extra)
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            return None, {}
        stddev = self.noise_stddev()
        for _, res in results:
            res.num_examples = 1
            noised = add_gaussian_noise(parameters_to_ndarrays(res.parameters), stddev,
                                        self.rng_)
            res.parameters = ndarrays_to_parameters(noised)
        return self.strategy.aggregate_fit(server_round, results, failures)



class DPFedAvgAdaptive(DPFedAvgFixed):
    """DPFedAvgFixed whose clipping norm adapts each round (deprecated).

    Parameters
    ----------
    strategy, num_sampled_clients, noise_multiplier, server_side_noising
        As for :class:`DPFedAvgFixed`; part of ``noise_multiplier`` pays for the noised
        count, so the updates get ``(z^-2 - (2 sigma_b)^-2)^(-1/2)``.
    init_clip_norm
        The first round's ``C``.
    clip_norm_lr
        The learning rate of the geometric update of ``C``.
    clip_norm_target_quantile
        The share of clients whose update norm should stay within ``C``.
    clip_count_stddev
        ``sigma_b``, the noise on the count of those clients (default ``m / 20`` when
        ``noise_multiplier > 0``, else 0).
    """

    def __init__(
        self,
        strategy: Strategy,
        num_sampled_clients: int,
        init_clip_norm: float = 0.1,
        noise_multiplier: float = 1.0,
        server_side_noising: bool = True,
        clip_norm_lr: float = 0.2,
        clip_norm_target_quantile: float = 0.5,
        clip_count_stddev: float | None = None,
    ) -> None:
        warn_deprecated_feature("`DPFedAvgAdaptive` wrapper")
        super().__init__(strategy, num_sampled_clients, init_clip_norm, noise_multiplier,
                         server_side_noising)
        self.clip_norm_lr = clip_norm_lr
        self.clip_norm_target_quantile = clip_norm_target_quantile
        self.clip_count_stddev, self.noise_multiplier = adaptive_noise_split(
            noise_multiplier, num_sampled_clients, clip_count_stddev)

    def __repr__(self) -> str:
        return "Strategy with DP with Adaptive Clipping enabled."

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        instructions = super().configure_fit(server_round, parameters, client_manager)
        for _, ins in instructions:
            ins.config["dpfedavg_adaptive_clip_enabled"] = True
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if failures:
            return None, {}
        aggregated = super().aggregate_fit(server_round, results, failures)
        self._update_clip_norm(results)
        return aggregated

    def _update_clip_norm(self, results: list[tuple[ClientProxy, FitRes]]) -> None:
        missing = [proxy.cid for proxy, res in results if "dpfedavg_norm_bit" not in res.metrics]
        if missing:
            raise KeyError(f"clients {missing} sent no 'dpfedavg_norm_bit' fit metric; "
                           "DPFedAvgAdaptive needs it from every client")
        within = sum(1 for _, res in results if res.metrics["dpfedavg_norm_bit"])
        noised = float(self.rng_.normal(within, self.clip_count_stddev))
        # The norm bit marks an update within C; adaptive_clip_norm_step takes the clipped
        # share and its target, 1 - b and 1 - q: C <- C exp(-lr (b - q)).
        self.clip_norm = adaptive_clip_norm_step(
            self.clip_norm, 1.0 - noised / len(results), 1.0 - self.clip_norm_target_quantile,
            self.clip_norm_lr)
