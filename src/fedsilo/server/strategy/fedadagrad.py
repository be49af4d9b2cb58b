"""FedAdagrad (Reddi et al., 2021): Adagrad on the server."""

from __future__ import annotations

from typing import Unpack

from fedsilo.common.typing import Parameters
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
