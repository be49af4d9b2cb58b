"""FedYogi (Reddi et al., 2021): Yogi on the server."""

from __future__ import annotations

from typing import Unpack

from fedsilo.common.typing import NDArrays, Parameters
from fedsilo.server.strategy.aggregate import OptimizerStep, fedyogi_step
from fedsilo.server.strategy.fedavg import SamplingOptions
from fedsilo.server.strategy.fedopt import FedOpt

__all__ = ["FedYogi"]


class FedYogi(FedOpt):
    """Like FedAdam, but the second moment moves additively (by the sign of ``v - delta^2``),
    so it grows more slowly and forgets less abruptly."""

    def __init__(
        self,
        *,
        initial_parameters: Parameters,
        eta: float = 1e-2,
        eta_l: float = 0.0316,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        **kwargs: Unpack[SamplingOptions],
    ) -> None:
        super().__init__(initial_parameters=initial_parameters, eta=eta, eta_l=eta_l,
                         beta_1=beta_1, beta_2=beta_2, tau=tau, **kwargs)

    def step(self, server_round: int, averaged: NDArrays) -> OptimizerStep:
        return fedyogi_step(self.current_weights, averaged, self.m_t, self.v_t,
                            eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau)
