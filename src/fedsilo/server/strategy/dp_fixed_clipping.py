"""Differential privacy with a fixed clipping norm, clipped on the server or on the clients."""

from __future__ import annotations

from fedsilo.common.clipping import KEY_CLIPPING_NORM
from fedsilo.common.typing import FitIns, Parameters
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.dp_wrapper import PrivacyWrapper
from fedsilo.server.strategy.strategy import Strategy

__all__ = [
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideFixedClipping",
]


class _FixedClipping(PrivacyWrapper):
    def __init__(
        self,
        strategy: Strategy,
        noise_multiplier: float,
        clipping_norm: float,
        num_sampled_clients: int,
        *,
        target_delta: float = 1e-5,
        seed: int | None = None,
    ) -> None:
        if clipping_norm <= 0:
            raise ValueError(f"clipping_norm must be positive, got {clipping_norm}")
        super().__init__(strategy, noise_multiplier, num_sampled_clients,
                         target_delta=target_delta, seed=seed)
        self.clipping_norm = clipping_norm

    def round_clipping_norm(self) -> float:
        return self.clipping_norm


class DifferentialPrivacyServerSideFixedClipping(_FixedClipping):
    """Central DP: the server clips each update to ``clipping_norm``, the wrapped strategy
    aggregates, the server adds N(0, (z C / m)^2) noise. Streams when the wrapped strategy
    does. Clients see nothing different, so any client works."""

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Server-Side Fixed Clipping)"


class DifferentialPrivacyClientSideFixedClipping(_FixedClipping):
    """Central DP with clipping on the clients: the server sends ``clipping_norm`` in the
    fit config (key ``clipping_norm``) and only adds the noise. Clients must clip, e.g.
    wrapped in :class:`fedsilo.client.mod.FixedClippingClient`. Streams when the wrapped
    strategy does."""

    clips_on_server = False

    def __repr__(self) -> str:
        return "Differential Privacy Strategy Wrapper (Client-Side Fixed Clipping)"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        pairs = super().configure_fit(server_round, parameters, client_manager)
        return with_clipping_norm(pairs, self.clipping_norm)


def with_clipping_norm(
    pairs: list[tuple[ClientProxy, FitIns]], clipping_norm: float
) -> list[tuple[ClientProxy, FitIns]]:
    """The same instructions with ``clipping_norm`` added to each config (copied, not
    changed in place, so the wrapped strategy's config objects stay as they were)."""
    out: list[tuple[ClientProxy, FitIns]] = []
    made: dict[int, FitIns] = {}
    for client, ins in pairs:
        if id(ins) not in made:
            made[id(ins)] = FitIns(ins.parameters, {**ins.config, KEY_CLIPPING_NORM: clipping_norm})
        out.append((client, made[id(ins)]))
    return out
