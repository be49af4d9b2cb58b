"""FedAvgM: federated averaging with server momentum (Hsu et al., 2019)."""

from __future__ import annotations

from typing import Any, Unpack

from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import FitIns, FitRes, NDArrays, Parameters, Scalar
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.aggregate import fedavgm_step
from fedsilo.server.strategy.fedavg import FedAvg, FedAvgOptions

__all__ = ["FedAvgM"]


class FedAvgM(FedAvg):
    """FedAvg whose server treats ``w - mean`` as a gradient and steps with momentum.

    With the defaults (learning rate 1, momentum 0) it is exactly FedAvg. The step starts
    from the round's global model, so no ``initial_parameters`` are needed. Streams.
    """

    def __init__(
        self,
        *,
        server_learning_rate: float = 1.0,
        server_momentum: float = 0.0,
        **kwargs: Unpack[FedAvgOptions],
    ) -> None:
        super().__init__(**kwargs)
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.server_opt = server_momentum != 0.0 or server_learning_rate != 1.0
        self.momentum_vector: NDArrays | None = None
        self.current_weights_: NDArrays | None = (
            None if self.initial_parameters is None
            else parameters_to_ndarrays(self.initial_parameters))

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        if self.server_opt and parameters.tensors:
            self.current_weights_ = parameters_to_ndarrays(parameters)
        return super().configure_fit(server_round, parameters, client_manager)

    def conclude_fit(
        self, server_round: int, aggregate: NDArrays, results: list[tuple[ClientProxy, FitRes]]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if self.server_opt:
            if self.current_weights_ is None:
                raise ValueError(
                    "FedAvgM with server momentum or a learning rate other than 1 needs the "
                    "round's global model: give initial_parameters or run it in a Server")
            aggregate, self.momentum_vector = fedavgm_step(
                self.current_weights_, aggregate, self.momentum_vector,
                self.server_learning_rate, self.server_momentum)
            self.current_weights_ = aggregate
        return ndarrays_to_parameters(aggregate), self.aggregate_metrics_fit(results)

    def state_dict(self) -> dict[str, Any]:
        return {"momentum_vector": self.momentum_vector, "current_weights": self.current_weights_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.momentum_vector = state.get("momentum_vector")
        self.current_weights_ = state.get("current_weights")
