"""Central differential privacy with fixed or adaptive clipping, wrapped around a
Message-API strategy.

Each node's update (its arrays minus the arrays it was sent) is clipped to ``clipping_norm``
— on the server (``DifferentialPrivacyServerSideFixedClipping``) or on the node, by
``fixedclipping_mod``, to the norm the server sends in the train config
(``DifferentialPrivacyClientSideFixedClipping``) — and Gaussian noise of standard deviation
``noise_multiplier * clipping_norm / num_sampled_clients`` is added to the aggregate. The
clipping and the noise are the legacy wrappers' functions.

The adaptive wrappers start from ``initial_clipping_norm`` and, after each round, move the
norm by the legacy wrappers' step (Andrew et al., 2021): ``C <- C exp(lr (c - gamma))`` with
``c`` the noised share of clipped updates and ``gamma`` the ``target_clipped_quantile``. The
round's noise is calibrated to the norm that round's updates were clipped to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from fedsilo.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from fedsilo.common.clipping import KEY_CLIPPING_NORM, KEY_NORM_BIT, clip_update
from fedsilo.server.strategy.aggregate import (
    adaptive_clip_norm_step,
    adaptive_noise_split,
    add_gaussian_noise,
    gaussian_noise_stddev,
)
from fedsilo.serverapp._grid import Grid
from fedsilo.serverapp.strategy._strategy import Strategy

log = logging.getLogger("fedsilo.server")

__all__ = ["DifferentialPrivacyClientSideAdaptiveClipping",
           "DifferentialPrivacyClientSideFixedClipping",
           "DifferentialPrivacyServerSideAdaptiveClipping",
           "DifferentialPrivacyServerSideFixedClipping"]


class _FixedClippingBase(Strategy):
    """Checks the settings, delegates evaluation, adds the noise."""

    def __init__(self, strategy: Strategy, noise_multiplier: float, clipping_norm: float,
                 num_sampled_clients: int, *, seed: int | None = None) -> None:
        if noise_multiplier < 0:
            raise ValueError("The noise multiplier should be a non-negative value.")
        if clipping_norm <= 0:
            raise ValueError("The clipping norm should be a positive value.")
        if num_sampled_clients <= 0:
            raise ValueError("The number of sampled clients should be a positive value.")
        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.clipping_norm = clipping_norm
        self.num_sampled_clients = num_sampled_clients
        self.rng_ = np.random.default_rng(seed)
        self.current_arrays = ArrayRecord()  # the arrays this round's nodes were sent

    clips_on_server = True
    """Whether the server clips the updates (else the nodes do, to the norm it sends)."""

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        if self.clips_on_server:
            self.current_arrays = arrays
        else:
            config[KEY_CLIPPING_NORM] = self.clipping_norm
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def _noised(self, arrays: ArrayRecord | None) -> ArrayRecord | None:
        if arrays is None:
            return None
        stddev = gaussian_noise_stddev(self.noise_multiplier, self.clipping_norm,
                                       self.num_sampled_clients)
        noised = add_gaussian_noise([a.numpy() for a in arrays.values()], stddev, self.rng_)
        log.info("central DP noise with standard deviation %.4f added", stddev)
        return ArrayRecord({k: Array(np.asarray(v))
                            for k, v in zip(arrays.keys(), noised, strict=True)})

    def _clip_replies(self, replies: Iterable[Message], sent_record: ArrayRecord
                      ) -> tuple[list[Message], int]:
        """The replies with each update (arrays minus ``sent_record``) clipped to the
        clipping norm, and how many updates were clipped."""
        sent = [a.numpy() for a in sent_record.values()]
        clipped_replies = list(replies)
        clipped = 0
        for reply in clipped_replies:
            if reply.has_error():
                continue
            for name, record in list(reply.content.array_records.items()):
                trained = [a.numpy() for a in record.values()]
                update, was_clipped = clip_update(
                    [t - s for t, s in zip(trained, sent, strict=True)], self.clipping_norm)
                clipped += int(was_clipped)
                reply.content[name] = ArrayRecord({
                    k: Array(np.asarray(s + u).astype(t.dtype, copy=False))
                    for k, s, u, t in zip(record.keys(), sent, update, trained, strict=True)})
        return clipped_replies, clipped

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord,
                           config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def state_dict(self) -> dict[str, Any]:
        return {"rng_state": self.rng_.bit_generator.state, "clipping_norm": self.clipping_norm,
                "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng_.bit_generator.state = state["rng_state"]
        self.clipping_norm = float(state["clipping_norm"])
        self.strategy.load_state_dict(dict(state.get("strategy", {})))

    def summary(self) -> None:
        log.info("%s: noise multiplier %g, clipping norm %g, %d sampled nodes",
                 type(self).__name__, self.noise_multiplier, self.clipping_norm,
                 self.num_sampled_clients)
        self.strategy.summary()


class DifferentialPrivacyServerSideFixedClipping(_FixedClippingBase):
    """Clip every node's update on the server, aggregate with ``strategy``, add noise.

    Parameters
    ----------
    strategy:
        The strategy that aggregates the clipped updates (FedAvg, say).
    noise_multiplier:
        Noise standard deviation relative to the clipping norm.
    clipping_norm:
        The L2 norm every update is clipped to.
    num_sampled_clients:
        Nodes sampled per round (the mean's sensitivity is ``clipping_norm`` over it).
    seed:
        Seed of the noise (fedsilo's addition; None: fresh).
    """

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        clipped_replies, _ = self._clip_replies(replies, self.current_arrays)
        arrays, metrics = self.strategy.aggregate_train(server_round, clipped_replies)
        return self._noised(arrays), metrics


class DifferentialPrivacyClientSideFixedClipping(_FixedClippingBase):
    """Ask the nodes to clip their updates (``fixedclipping_mod``), aggregate with
    ``strategy``, add noise. Parameters as ``DifferentialPrivacyServerSideFixedClipping``."""

    clips_on_server = False

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        return self._noised(arrays), metrics


class _AdaptiveClippingBase(_FixedClippingBase):
    """The fixed wrappers' noise, with a clipping norm that follows a quantile of the
    update norms."""

    def __init__(self, strategy: Strategy, noise_multiplier: float, num_sampled_clients: int,
                 initial_clipping_norm: float = 0.1, target_clipped_quantile: float = 0.5,
                 clip_norm_lr: float = 0.2, clipped_count_stddev: float | None = None, *,
                 seed: int | None = None) -> None:
        if initial_clipping_norm <= 0:
            raise ValueError("The initial clipping norm should be a positive value.")
        if not 0 <= target_clipped_quantile <= 1:
            raise ValueError("The target clipped quantile must be in [0, 1].")
        if clip_norm_lr <= 0:
            raise ValueError("The learning rate must be positive.")
        if clipped_count_stddev is not None and clipped_count_stddev < 0:
            raise ValueError("The `clipped_count_stddev` must be non-negative.")
        super().__init__(strategy, noise_multiplier, initial_clipping_norm,
                         num_sampled_clients, seed=seed)
        self.target_clipped_quantile = target_clipped_quantile
        self.clip_norm_lr = clip_norm_lr
        # The count of clipped updates is released too: the noise is split between the two.
        self.clipped_count_stddev, self.noise_multiplier = adaptive_noise_split(
            noise_multiplier, num_sampled_clients, clipped_count_stddev)

    def _adapt(self, clipped: int, total: int) -> None:
        """Move the clipping norm toward the target quantile of the round's update norms."""
        if total == 0:
            return
        noised = float(self.rng_.normal(clipped, self.clipped_count_stddev))
        self.clipping_norm = adaptive_clip_norm_step(
            self.clipping_norm, noised / total, self.target_clipped_quantile, self.clip_norm_lr)
        log.info("clipping norm for the next round: %.4f (%d of %d updates clipped)",
                 self.clipping_norm, clipped, total)


class DifferentialPrivacyServerSideAdaptiveClipping(_AdaptiveClippingBase):
    """Clip every node's update on the server to the current norm, aggregate with
    ``strategy``, add noise, then adapt the norm.

    Parameters
    ----------
    strategy:
        The strategy that aggregates the clipped updates.
    noise_multiplier:
        Total noise multiplier, split between the model and the count of clipped updates.
    num_sampled_clients:
        Nodes sampled per round.
    initial_clipping_norm, target_clipped_quantile, clip_norm_lr:
        The norm to start from, the share of updates to clip, and the step size.
    clipped_count_stddev:
        Noise on the count of clipped updates (default ``num_sampled_clients / 20``).
    seed:
        Seed of the noise (fedsilo's addition; None: fresh).
    """

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        clipped_replies, clipped = self._clip_replies(replies, self.current_arrays)
        arrays, metrics = self.strategy.aggregate_train(server_round, clipped_replies)
        noised = self._noised(arrays)
        self._adapt(clipped, sum(not r.has_error() for r in clipped_replies))
        return noised, metrics


class DifferentialPrivacyClientSideAdaptiveClipping(_AdaptiveClippingBase):
    """Send the current norm to the nodes, which clip and report ``norm_bit``
    (``adaptiveclipping_mod``); aggregate with ``strategy``, add noise, adapt the norm.
    A reply without ``norm_bit`` is left out with a warning. Parameters as
    ``DifferentialPrivacyServerSideAdaptiveClipping``."""

    clips_on_server = False

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        kept: list[Message] = []
        clipped = 0
        for reply in replies:
            if not reply.has_error():
                bits = [m[KEY_NORM_BIT] for m in reply.content.metric_records.values()
                        if KEY_NORM_BIT in m]
                if not bits:
                    log.warning("reply from node %d has no %r metric (clip with "
                                "adaptiveclipping_mod); skipped", reply.metadata.src_node_id,
                                KEY_NORM_BIT)
                    continue
                clipped += int(bool(bits[0]))
            kept.append(reply)
        arrays, metrics = self.strategy.aggregate_train(server_round, kept)
        noised = self._noised(arrays)
        self._adapt(clipped, sum(not r.has_error() for r in kept))
        return noised, metrics
