"""FedAdam (Reddi et al., 2021): Adam on the server."""

from __future__ import annotations

from typing import Unpack

from fedsilo.common.typing import NDArrays, Parameters
from fedsilo.server.strategy.aggregate import OptimizerStep, fedadam_step
from fedsilo.server.strategy.fedavg import SamplingOptions
from fedsilo.server.strategy.fedopt import FedOpt

__all__ = ["FedAdam"]


class FedAdam(FedOpt):
    """Exponential moving averages of the update and its square, with bias correction."""

    def __init__(
        self,
        *,
        initial_parameters: Parameters,
        eta: float = 1e-1,
        eta_l: float = 1e-1,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-9,
        **kwargs: Unpack[SamplingOptions],
    ) -> None:
        super().__init__(initial_parameters=initial_parameters, eta=eta, eta_l=eta_l,
                         beta_1=beta_1, beta_2=beta_2, tau=tau, **kwargs)

    def step(self, server_round: int, averaged: NDArrays) -> OptimizerStep:
        return fedadam_step(self.current_weights, averaged, self.m_t, self.v_t,
                            server_round=server_round, eta=self.eta, beta_1=self.beta_1,
                            beta_2=self.beta_2, tau=self.tau)
