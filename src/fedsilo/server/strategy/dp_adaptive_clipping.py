"""Differential privacy with a clipping norm that adapts to a quantile of update norms.

Andrew et al. (2021), "Differentially Private Learning with Adaptive Clipping": each round
the (noised) fraction ``c`` of clipped updates moves ``C <- C exp(lr (c - gamma))``, so that
in the long run a ``gamma`` share (``target_clipped_quantile``) of updates is clipped.
Flower's wrappers apply this step with the opposite sign (``exp(-lr (c - gamma))``), which
shrinks ``C`` further whenever too many updates are clipped; fedsilo follows the paper.
Counting clipped updates costs privacy too, so the total noise multiplier ``z`` is split
between the count (std ``sigma_b``) and the model (``z_delta``).
"""

from __future__ import annotations

from typing import Any

from fedsilo.common.clipping import KEY_NORM_BIT
from fedsilo.common.typing import FitIns, FitRes, Parameters
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.aggregate import adaptive_clip_norm_step, adaptive_noise_split
from fedsilo.server.strategy.dp_fixed_clipping import with_clipping_norm
from fedsilo.server.strategy.dp_wrapper import PrivacyWrapper
from fedsilo.server.strategy.strategy import Strategy

__all__ = [
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
]


class _AdaptiveClipping(PrivacyWrapper):
    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        num_sampled_clients: int,
        initial_clipping_norm: float = 0.1,
        target_clipped_quantile: float = 0.5,
        clip_norm_lr: float = 0.2,
        clipped_count_stddev: float | None = None,
        *,
        target_delta: float = 1e-5,
        seed: int | None = None,
    ) -> None:
        if initial_clipping_norm <= 0:
            raise ValueError(
                f"initial_clipping_norm must be positive, got {initial_clipping_norm}")
        if not 0 <= target_clipped_quantile <= 1:
            raise ValueError(
                f"target_clipped_quantile must be in [0, 1], got {target_clipped_quantile}")
        if clip_norm_lr <= 0:
            raise ValueError(f"clip_norm_lr must be positive, got {clip_norm_lr}")
        if clipped_count_stddev is not None and clipped_count_stddev < 0:
            raise ValueError(
                f"clipped_count_stddev must be non-negative, got {clipped_count_stddev}")
        super().__init__(strategy, noise_multiplier, num_sampled_clients,
                         target_delta=target_delta, seed=seed)
        self.initial_clipping_norm = initial_clipping_norm
        self.target_clipped_quantile = target_clipped_quantile
        self.clip_norm_lr = clip_norm_lr
        self.clipped_count_stddev = clipped_count_stddev
        self.count_stddev_, self.update_noise_multiplier_ = adaptive_noise_split(
            noise_multiplier, num_sampled_clients, clipped_count_stddev)
        self.clipping_norm = initial_clipping_norm  # learned: moves every round

    def round_clipping_norm(self) -> float:
        return self.clipping_norm

    def update_noise_multiplier(self) -> float:
        return self.update_noise_multiplier_

    def after_clipping(self, clipped_count: int, num_results: int) -> None:
        noised = float(self.rng_.normal(clipped_count, self.count_stddev_))
        self.clipping_norm = adaptive_clip_norm_step(
            self.clipping_norm, noised / num_results, self.target_clipped_quantile,
            self.clip_norm_lr)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "clipping_norm": self.clipping_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict({k: v for k, v in state.items() if k != "clipping_norm"})
        self.clipping_norm = float(state.get("clipping_norm", self.initial_clipping_norm))


class DifferentialPrivacyServerSideAdaptiveClipping(_AdaptiveClipping):
    """Central DP, adaptive clipping on the server. Streams when the wrapped strategy does.

    The noise on the model is calibrated to the norm the round's updates were clipped to.
    """

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Server-Side Adaptive Clipping)"


class DifferentialPrivacyClientSideAdaptiveClipping(_AdaptiveClipping):
    """Central DP, adaptive clipping on the clients: the server sends ``clipping_norm``;
    each client clips and reports ``norm_bit`` (whether it clipped), e.g. through
    :class:`fedsilo.client.mod.AdaptiveClippingClient`."""

    clips_on_server = False

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Client-Side Adaptive Clipping)"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        pairs = super().configure_fit(server_round, parameters, client_manager)
        return with_clipping_norm(pairs, self.clipping_norm)

    def reported_clipped(self, client: ClientProxy, res: FitRes) -> bool:
        if KEY_NORM_BIT not in res.metrics:
            raise ValueError(
                f"client {client.cid} did not report '{KEY_NORM_BIT}' in its fit metrics; "
                "client-side adaptive clipping needs clients that clip and report it "
                "(wrap them in fedsilo.client.mod.AdaptiveClippingClient)")
        return bool(res.metrics[KEY_NORM_BIT])
