"""A stateful strategy for resume tests: FedAvg followed by a server momentum step.

Its velocity and counter live only in the strategy, so a resumed run matches
an uninterrupted one only if the checkpoint carried ``state_dict()`` across.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.common import ndarrays_to_parameters, parameters_to_ndarrays

SHAPES = [(4, 3), (3,)]


def initial_arrays() -> list[np.ndarray]:
    return [np.linspace(-1.0, 1.0, int(np.prod(s))).reshape(s) for s in SHAPES]


class MomentumFedAvg(fl.server.strategy.FedAvg):
    """new = current - velocity, velocity = momentum * velocity + (current - mean of clients)."""

    def __init__(self, *, momentum: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum = momentum
        self.velocity_: list[np.ndarray] = []
        self.rounds_aggregated_ = 0
        self.current_: list[np.ndarray] = []

    def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
        self.current_ = parameters_to_ndarrays(parameters)
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        mean, metrics = super().aggregate_fit(server_round, results, failures)
        if mean is None:
            return None, metrics
        delta = [c - m for c, m in zip(self.current_, parameters_to_ndarrays(mean), strict=True)]
        if self.velocity_:
            delta = [self.momentum * v + d for v, d in zip(self.velocity_, delta, strict=True)]
        self.velocity_ = delta
        self.rounds_aggregated_ += 1
        updated = [c - v for c, v in zip(self.current_, self.velocity_, strict=True)]
        return ndarrays_to_parameters(updated), {**metrics,
                                                 "rounds_aggregated": self.rounds_aggregated_,
                                                 "clients": len(results)}

    def state_dict(self) -> dict[str, Any]:
        return {"velocity": list(self.velocity_), "rounds_aggregated": self.rounds_aggregated_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity_ = [np.asarray(v) for v in state["velocity"]]
        self.rounds_aggregated_ = int(state["rounds_aggregated"])


def make_strategy() -> MomentumFedAvg:
    """Three clients, every one of them trains and evaluates each round."""
    return MomentumFedAvg(
        min_fit_clients=3, min_evaluate_clients=3, min_available_clients=3,
        on_fit_config_fn=lambda r: {"server_round": r},
        on_evaluate_config_fn=lambda r: {"server_round": r},
        initial_parameters=ndarrays_to_parameters(initial_arrays()),
    )
