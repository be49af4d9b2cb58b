"""FedAdagrad (Reddi et al., 2021): Adagrad on the server."""

from __future__ import annotations

from typing import Unpack

from fedsilo.common.typing import NDArrays, Parameters
from fedsilo.server.strategy.aggregate import OptimizerStep, fedadagrad_step
from fedsilo.server.strategy.fedavg import SamplingOptions
from fedsilo.server.strategy.fedopt import FedOpt

__all__ = ["FedAdagrad"]


class FedAdagrad(FedOpt):
    """The second moment sums squared updates, so coordinates that moved much step less.

    No first-moment decay (``beta_1 = beta_2 = 0``): ``m_t`` is the round's update.
    """

    def __init__(
        self,
        *,
        initial_parameters: Parameters,
        eta: float = 1e-1,
        eta_l: float = 1e-1,
        tau: float = 1e-9,
        **kwargs: Unpack[SamplingOptions],
    ) -> None:
        super().__init__(initial_parameters=initial_parameters, eta=eta, eta_l=eta_l,
                         beta_1=0.0, beta_2=0.0, tau=tau, **kwargs)

    def step(self, server_round: int, averaged: NDArrays) -> OptimizerStep:
        return fedadagrad_step(self.current_weights, averaged, self.m_t, self.v_t,
                               eta=self.eta, beta_1=self.beta_1, tau=self.tau)
