"""The Message-API strategy: ``start()`` runs the rounds; hooks say what to send and how
to combine the replies (Flower's ``flwr.serverapp.strategy.Strategy``)."""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fedsilo.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from fedsilo.serverapp._grid import Grid

log = logging.getLogger("fedsilo.server")

__all__ = ["Result", "Strategy", "sample_nodes"]

EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]


@dataclass
class Result:
    """What ``start()`` returns: the final arrays and the metrics of every round.

    Parameters
    ----------
    arrays:
        The global model after the last round that aggregated.
    train_metrics_clientapp, evaluate_metrics_clientapp:
        The aggregated metrics of the nodes' train and evaluate replies, by round.
    evaluate_metrics_serverapp:
        What ``evaluate_fn`` returned, by round (round 0: the initial arrays).
    """

    arrays: ArrayRecord = field(default_factory=ArrayRecord)
    train_metrics_clientapp: dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_clientapp: dict[int, MetricRecord] = field(default_factory=dict)
    evaluate_metrics_serverapp: dict[int, MetricRecord] = field(default_factory=dict)


def sample_nodes(grid: Grid, min_available_nodes: int, sample_size: int,
                 wait_timeout: float | None = None) -> tuple[list[int], list[int]]:
    """Wait for ``max(min_available_nodes, sample_size)`` nodes, then sample ``sample_size``
    of them at random (``random.seed`` makes it repeatable); return the sample and all."""
    needed = max(min_available_nodes, sample_size)
    deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
    logged = 0.0
    while len(nodes := list(grid.get_node_ids())) < needed:
        now = time.monotonic()
        if deadline is not None and now > deadline:
            raise TimeoutError(f"{len(nodes)} nodes connected, {needed} needed, after "
                               f"{wait_timeout} s")
        if now - logged > 10.0:
            log.info("waiting for nodes to connect: %d connected (minimum required: %d)",
                     len(nodes), needed)
            logged = now
        time.sleep(0.05)
    return random.sample(nodes, sample_size), nodes


class Strategy(ABC):
    """Hooks keyed by round, and ``start()``, which calls them round after round."""

    @abstractmethod
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """The train messages of this round."""

    @abstractmethod
    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The new global arrays and the aggregated train metrics."""

    @abstractmethod
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord,
                           config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """The evaluate messages of this round."""

    @abstractmethod
    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        """The aggregated evaluate metrics."""

    def summary(self) -> None:
        """Log the strategy's settings."""
        log.info("%s", self)

    def state_dict(self) -> dict[str, Any]:
        """What a run that stops after a round needs to go on with this strategy as if it had
        not stopped (a deployment's Grid keeps it in its round checkpoints).

        Values are numpy arrays, lists of numpy arrays, or JSON values (numbers, strings,
        booleans, None, and lists or string-keyed dicts of those). Rules that keep nothing
        between rounds but the global arrays return {}; server optimizers return their
        moments, the privacy wrappers their noise generator and the wrapped strategy's state.
        """
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, into a strategy built with the same arguments."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, but the checkpoint holds "
                             f"{sorted(state)}")

    def train_round(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                    grid: Grid, timeout: float | None
                    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Send the round's train messages and aggregate the replies."""
        replies = grid.send_and_receive(
            self.configure_train(server_round, arrays, config, grid), timeout=timeout)
        return self.aggregate_train(server_round, replies)

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3,
              timeout: float = 3600, train_config: ConfigRecord | None = None,
              evaluate_config: ConfigRecord | None = None,
              evaluate_fn: EvaluateFn | None = None) -> Result:
        """Run ``num_rounds`` rounds of training and evaluation; return the Result.

        Parameters
        ----------
        grid:
            The nodes.
        initial_arrays:
            The global model to start from.
        num_rounds:
            Rounds to run.
        timeout:
            Seconds to wait for the replies of one round's messages.
        train_config, evaluate_config:
            Sent with every train / evaluate message (``server-round`` is added).
        evaluate_fn:
            ``evaluate_fn(server_round, arrays)`` evaluates the global model on the
            server, before the first round and after each.
        """
        log.info("starting %s: %d rounds", type(self).__name__, num_rounds)
        self.summary()
        train_config = ConfigRecord() if train_config is None else train_config
        evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
        started = time.monotonic()
        resumed = grid.resume(self)
        if resumed is not None:  # a deployment's run that stopped after round ``done``
            done, result = resumed
            log.info("resuming after round %d of %d", done, num_rounds)
        else:
            done, result = 0, Result(arrays=initial_arrays)
            if evaluate_fn is not None:
                metrics = evaluate_fn(0, initial_arrays)
                log.info("initial global evaluation: %s", metrics)
                if metrics is not None:
                    result.evaluate_metrics_serverapp[0] = metrics
                grid.on_round_end(0, result, self)
        arrays = result.arrays
        for server_round in range(done + 1, num_rounds + 1):
            round_started = time.monotonic()
            new_arrays, train_metrics = self.train_round(server_round, arrays, train_config,
                                                         grid, timeout)
            if new_arrays is not None:
                result.arrays = arrays = new_arrays
            if train_metrics is not None:
                result.train_metrics_clientapp[server_round] = train_metrics
            replies = grid.send_and_receive(
                self.configure_evaluate(server_round, arrays, evaluate_config, grid),
                timeout=timeout)
            evaluate_metrics = self.aggregate_evaluate(server_round, replies)
            if evaluate_metrics is not None:
                result.evaluate_metrics_clientapp[server_round] = evaluate_metrics
            central = None
            if evaluate_fn is not None:
                central = evaluate_fn(server_round, arrays)
                if central is not None:
                    result.evaluate_metrics_serverapp[server_round] = central
            log.info("round %d/%d: train %s, evaluate %s%s (%.2f s)", server_round, num_rounds,
                     _show(train_metrics), _show(evaluate_metrics),
                     f", global {_show(central)}" if central is not None else "",
                     time.monotonic() - round_started)
            grid.on_round_end(server_round, result, self)
        log.info("%s finished %d rounds in %.2f s", type(self).__name__, num_rounds,
                 time.monotonic() - started)
        return result


def _show(metrics: MetricRecord | None) -> str:
    if not metrics:
        return "-"
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in metrics.items())
