"""FedProx: FedAvg whose clients add a proximal term (Li et al., 2020)."""

from __future__ import annotations

from typing import Unpack

from fedsilo.common.typing import FitIns, Parameters
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.fedavg import FedAvg, FedAvgOptions

__all__ = ["FedProx"]


class FedProx(FedAvg):
    """Sends ``proximal_mu`` in every fit config; aggregation is FedAvg's (streams).

    Clients minimise ``F_k(w) + mu/2 ||w - w_global||^2``, which keeps heterogeneous sites
    from drifting far from the global model. The client must apply the term: the server can
    only send ``mu``. ``proximal_mu = 0`` is FedAvg.
    """

    def __init__(self, *, proximal_mu: float, **kwargs: Unpack[FedAvgOptions]) -> None:
        super().__init__(**kwargs)
        if proximal_mu < 0:
            raise ValueError(f"proximal_mu must be non-negative, got {proximal_mu}")
        self.proximal_mu = proximal_mu

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        pairs = super().configure_fit(server_round, parameters, client_manager)
        if not pairs:
            return pairs
        ins = pairs[0][1]
        config = {**ins.config, "proximal_mu": self.proximal_mu}
        shared = FitIns(ins.parameters, config)
        return [(client, shared) for client, _ in pairs]
