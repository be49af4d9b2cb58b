"""Central differential privacy with fixed clipping, wrapped around a Message-API strategy.

Each node's update (its arrays minus the arrays it was sent) is clipped to ``clipping_norm``
— on the server (``DifferentialPrivacyServerSideFixedClipping``) or on the node, by
``fixedclipping_mod``, to the norm the server sends in the train config
(``DifferentialPrivacyClientSideFixedClipping``) — and Gaussian noise of standard deviation
``noise_multiplier * clipping_norm / num_sampled_clients`` is added to the aggregate. The
clipping and the noise are the legacy wrappers' functions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from fedsilo.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from fedsilo.common.clipping import KEY_CLIPPING_NORM, clip_update
from fedsilo.server.strategy.aggregate import add_gaussian_noise, gaussian_noise_stddev
from fedsilo.serverapp._grid import Grid
from fedsilo.serverapp.strategy._strategy import Strategy

log = logging.getLogger("fedsilo.server")

__all__ = ["DifferentialPrivacyClientSideFixedClipping",
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

    def _noised(self, arrays: ArrayRecord | None) -> ArrayRecord | None:
        if arrays is None:
            return None
        stddev = gaussian_noise_stddev(self.noise_multiplier, self.clipping_norm,
                                       self.num_sampled_clients)
        noised = add_gaussian_noise([a.numpy() for a in arrays.values()], stddev, self.rng_)
        log.info("central DP noise with standard deviation %.4f added", stddev)
        return ArrayRecord({k: Array(np.asarray(v))
                            for k, v in zip(arrays.keys(), noised, strict=True)})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord,
                           config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

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

    def __init__(self, strategy: Strategy, noise_multiplier: float, clipping_norm: float,
                 num_sampled_clients: int, *, seed: int | None = None) -> None:
        super().__init__(strategy, noise_multiplier, clipping_norm, num_sampled_clients,
                         seed=seed)
        self.current_arrays = ArrayRecord()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.current_arrays = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        sent = [a.numpy() for a in self.current_arrays.values()]
        clipped_replies = list(replies)
        for reply in clipped_replies:
            if reply.has_error():
                continue
            for name, record in list(reply.content.array_records.items()):
                trained = [a.numpy() for a in record.values()]
                update, _ = clip_update([t - s for t, s in zip(trained, sent, strict=True)],
                                        self.clipping_norm)
                reply.content[name] = ArrayRecord({
                    k: Array(np.asarray(s + u).astype(t.dtype, copy=False))
                    for k, s, u, t in zip(record.keys(), sent, update, trained, strict=True)})
        arrays, metrics = self.strategy.aggregate_train(server_round, clipped_replies)
        return self._noised(arrays), metrics


class DifferentialPrivacyClientSideFixedClipping(_FixedClippingBase):
    """Ask the nodes to clip their updates (``fixedclipping_mod``), aggregate with
    ``strategy``, add noise. Parameters as ``DifferentialPrivacyServerSideFixedClipping``."""

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        config[KEY_CLIPPING_NORM] = self.clipping_norm
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        return self._noised(arrays), metrics
