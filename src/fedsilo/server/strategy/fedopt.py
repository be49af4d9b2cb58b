"""FedOpt: adaptive server optimizers over the averaged update (Reddi et al., 2021).

FedOpt holds what FedAdagrad, FedAdam and FedYogi share: the server's current model and
the optimizer's moments ``m_t`` and ``v_t``. Each round the clients' example-weighted mean
gives ``delta = mean - w``, and a subclass's ``step`` moves ``w``. The mean streams.
"""

from __future__ import annotations

from typing import Any, Unpack

from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import FitRes, NDArrays, Parameters, Scalar
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.aggregate import OptimizerStep
from fedsilo.server.strategy.fedavg import FedAvg, SamplingOptions

__all__ = ["FedOpt"]


class FedOpt(FedAvg):
    """Base of the adaptive server optimizers. On its own it takes no optimizer step (the
    new model is the mean, as in Flower); FedAdagrad, FedAdam and FedYogi define the step.

    ``eta`` is the server learning rate, ``eta_l`` the client learning rate (kept for the
    caller's configs, unused by the server), ``beta_1``/``beta_2`` the moment decays and
    ``tau`` the adaptivity floor. ``initial_parameters`` is required: the optimizer's
    state starts from it.
    """

    def __init__(
        self,
        *,
        initial_parameters: Parameters,
        eta: float = 1e-1,
        eta_l: float = 1e-1,
        beta_1: float = 0.0,
        beta_2: float = 0.0,
        tau: float = 1e-9,
        **kwargs: Unpack[SamplingOptions],
    ) -> None:
        super().__init__(initial_parameters=initial_parameters, **kwargs)
        self.eta = eta
        self.eta_l = eta_l
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.tau = tau
        self.current_weights: NDArrays = parameters_to_ndarrays(initial_parameters)
        self.m_t: NDArrays | None = None
        self.v_t: NDArrays | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    def step(self, server_round: int, averaged: NDArrays) -> OptimizerStep:
        """One optimizer step from ``current_weights`` toward ``averaged`` (here: none)."""
        return averaged, self.m_t or [], self.v_t or []

    def conclude_fit(
        self, server_round: int, aggregate: NDArrays, results: list[tuple[ClientProxy, FitRes]]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        new, m_t, v_t = self.step(server_round, aggregate)
        self.current_weights, self.m_t, self.v_t = new, m_t or None, v_t or None
        return ndarrays_to_parameters(self.current_weights), self.aggregate_metrics_fit(results)

    def state_dict(self) -> dict[str, Any]:
        return {"current_weights": self.current_weights, "m_t": self.m_t, "v_t": self.v_t}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current_weights = list(state["current_weights"])
        self.m_t = state.get("m_t")
        self.v_t = state.get("v_t")
