"""What the four differential-privacy wrappers share: delegation, noise, accounting, streaming.

A wrapper bounds each client's influence on the aggregate by clipping updates to an L2 norm
``C`` (on the server or on the clients), lets the wrapped strategy aggregate, and adds
Gaussian noise of std ``z C / m`` to the result (``z`` the noise multiplier, ``m`` the
number of sampled clients), as in DP-FedAvg (McMahan et al., 2018). After every noisy round
an RDP accountant adds the round's privacy cost; the epsilon spent so far at
``target_delta`` goes into the round's fit metrics (``dp_epsilon``, ``dp_delta``), hence into
the History, and into the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from fedsilo.common.clipping import clip_update
from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import (
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
)
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.aggregate import add_gaussian_noise, gaussian_noise_stddev
from fedsilo.server.strategy.privacy import RdpAccountant
from fedsilo.server.strategy.strategy import FitAccumulator, Strategy, WrappingStrategy

log = logging.getLogger("fedsilo.server")

__all__ = ["PrivacyWrapper"]

FitResults = list[tuple[ClientProxy, FitRes]]
FitFailures = list[tuple[ClientProxy, FitRes] | BaseException]
FitOutcome = tuple[Parameters | None, dict[str, Scalar]]


class PrivacyWrapper(WrappingStrategy):
    """Base of the DP wrappers; subclasses say where clipping happens and how ``C`` moves."""

    clips_on_server = True

    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        *,
        target_delta: float,
        seed: int | None,
    ) -> None:
        if strategy is None:
            raise ValueError("the strategy to wrap is None")
        if noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be non-negative, got {noise_multiplier}")
        if num_sampled_clients <= 0:
            raise ValueError(f"num_sampled_clients must be positive, got {num_sampled_clients}")
        if not 0 < target_delta < 1:
            raise ValueError(f"target_delta must be in (0, 1), got {target_delta}")
        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.num_sampled_clients = num_sampled_clients
        self.target_delta = target_delta
        self.seed = seed
        self.rng_ = np.random.default_rng(seed)
        self.accountant_ = RdpAccountant()
        self.current_round_params: NDArrays = []
        self.population_: int | None = None

    # Hooks for the subclasses --------------------------------------------------------------

    def round_clipping_norm(self) -> float:
        """The norm updates are clipped to this round."""
        raise NotImplementedError

    def update_noise_multiplier(self) -> float:
        """The multiplier of the noise on the model (adaptive clipping keeps some back)."""
        return self.noise_multiplier

    def reported_clipped(self, client: ClientProxy, res: FitRes) -> bool:
        """Whether a client that clips its own update says it was clipped (adaptive only)."""
        return False

    def after_clipping(self, clipped_count: int, num_results: int) -> None:
        """Called once per round with how many updates were clipped (adaptive: move ``C``)."""

    # Fit -----------------------------------------------------------------------------------

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self.population_ = client_manager.num_available()
        if self.clips_on_server:
            self.current_round_params = parameters_to_ndarrays(parameters)
        return self.strategy.configure_fit(server_round, parameters, client_manager)

    def prepare_result(self, client: ClientProxy, res: FitRes, arrays: NDArrays) -> tuple[
            NDArrays, bool]:
        """Clip one result's update when the server clips; return it and its clipped bit
        (the bit the client reported, when clients clip)."""
        if not self.clips_on_server:
            return arrays, self.reported_clipped(client, res)
        if not self.current_round_params:
            raise ValueError("server-side clipping needs configure_fit of the round first")
        update = [a - c for a, c in zip(arrays, self.current_round_params, strict=True)]
        clipped, was_clipped = clip_update(update, self.round_clipping_norm())
        return [c + u for c, u in zip(self.current_round_params, clipped, strict=True)], \
            was_clipped

    def aggregate_fit(
        self, server_round: int, results: FitResults, failures: FitFailures
    ) -> FitOutcome:
        if failures:
            return self._refuse(server_round, failures)
        prepared: FitResults = []
        clipped = 0
        for client, res in results:
            arrays, bit = self.prepare_result(client, res, parameters_to_ndarrays(res.parameters))
            clipped += bit
            prepared.append((client, replace(res, parameters=ndarrays_to_parameters(arrays))))
        return self.finish_round(
            server_round, prepared, clipped,
            lambda: self.strategy.aggregate_fit(server_round, prepared, failures))

    def fit_accumulator(
        self, server_round: int, parameters: Parameters
    ) -> FitAccumulator | None:
        inner = self.strategy.fit_accumulator(server_round, parameters)
        if inner is None:
            return None
        if self.clips_on_server and not self.current_round_params and parameters.tensors:
            self.current_round_params = parameters_to_ndarrays(parameters)
        return PrivacyAccumulator(self, inner, server_round)

    def _refuse(self, server_round: int, failures: FitFailures) -> FitOutcome:
        log.warning("round %d: %d clients failed; a private round aggregates only when every "
                    "sampled client answers, so the model stays as it was",
                    server_round, len(failures))
        return None, {}

    def finish_round(
        self,
        server_round: int,
        results: FitResults,
        clipped_count: int,
        aggregate_inner: Callable[[], FitOutcome],
    ) -> FitOutcome:
        """Aggregate with the wrapped strategy, move ``C``, add noise, account the round."""
        if len(results) != self.num_sampled_clients:
            log.warning("round %d: %d clients returned updates but num_sampled_clients is %d; "
                        "the noise is calibrated for %d", server_round, len(results),
                        self.num_sampled_clients, self.num_sampled_clients)
        clipping_norm = self.round_clipping_norm()
        parameters, metrics = aggregate_inner()
        if results:
            self.after_clipping(clipped_count, len(results))
        if parameters is None:
            return None, metrics
        stddev = gaussian_noise_stddev(
            self.update_noise_multiplier(), clipping_norm, self.num_sampled_clients)
        noisy = add_gaussian_noise(parameters_to_ndarrays(parameters), stddev, self.rng_)
        return ndarrays_to_parameters(noisy), {**metrics, **self._account(server_round, stddev)}

    def _account(self, server_round: int, stddev: float) -> dict[str, Scalar]:
        if self.noise_multiplier == 0:
            log.warning("round %d: noise_multiplier is 0, so the aggregate has no privacy "
                        "guarantee (epsilon is infinite)", server_round)
            return {}
        population = self.population_ or self.num_sampled_clients
        rate = min(1.0, self.num_sampled_clients / population)
        self.accountant_.step(noise_multiplier=self.noise_multiplier, sampling_rate=rate)
        epsilon = self.accountant_.epsilon(self.target_delta)
        log.info("round %d: DP noise std %.4g (clip %.4g); privacy spent: epsilon %.4f at "
                 "delta %g after %d noisy rounds (sampling rate %.3g, noise multiplier %.3g)",
                 server_round, stddev, self.round_clipping_norm(), epsilon, self.target_delta,
                 len(self.accountant_.history_), rate, self.noise_multiplier)
        return {"dp_epsilon": epsilon, "dp_delta": self.target_delta}

    # Checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "accountant_history": self.accountant_.state_dict()["history"],
            "rng_state": self.rng_.bit_generator.state,
        }
        state.update({f"strategy.{k}": v for k, v in self.strategy.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant_.load_state_dict({"history": state.get("accountant_history", [])})
        if "rng_state" in state:
            self.rng_.bit_generator.state = state["rng_state"]
        prefix = "strategy."
        self.strategy.load_state_dict(
            {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


class PrivacyAccumulator(FitAccumulator):
    """Streams a DP wrapper's round: clip (or read the norm bit) as results arrive, fold
    them into the wrapped strategy's accumulator, add noise at the end."""

    def __init__(self, wrapper: PrivacyWrapper, inner: FitAccumulator, server_round: int) -> None:
        self.wrapper = wrapper
        self.inner = inner
        self.server_round = server_round
        self.clipped_ = 0

    def add(self, client: ClientProxy, res: FitRes, arrays: NDArrays) -> None:
        prepared, bit = self.wrapper.prepare_result(client, res, arrays)
        self.clipped_ += bit
        self.inner.add(client, res, prepared)

    def finish(self, results: FitResults, failures: FitFailures) -> FitOutcome:
        if failures:
            return self.wrapper._refuse(self.server_round, failures)
        return self.wrapper.finish_round(
            self.server_round, results, self.clipped_,
            lambda: self.inner.finish(results, failures))
