"""FedAvg over messages, and the strategies that differ from it only in their rule.

The arithmetic is the legacy strategies' (``server/strategy/aggregate.py``): FedAvg
and the strategies built on its mean (FedProx, FedAvgM, FedAdagrad, FedAdam, FedYogi)
fold each train reply into running sums as it arrives, so the server holds one model's
sums, not one model per node; the robust rules (FedMedian, FedTrimmedAvg, Krum,
MultiKrum) need every reply at once.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Iterable

import numpy as np

from fedsilo.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from fedsilo.common.typing import NDArrays
from fedsilo.server.strategy.aggregate import (
    add_weighted,
    aggregate_weighted_mean,
    start_weighted,
    weighted_mean_from_sums,
)
from fedsilo.serverapp._grid import Grid, ProxyGrid
from fedsilo.serverapp.strategy._strategy import Strategy, sample_nodes

log = logging.getLogger("fedsilo.server")

__all__ = ["FedAvg", "aggregate_metricrecords"]

MetricsAggrFn = Callable[[list[RecordDict], str], MetricRecord]
Rule = Callable[[list[tuple[NDArrays, int]]], NDArrays]


def aggregate_metricrecords(records: list[RecordDict], weighting_metric_name: str
                            ) -> MetricRecord:
    """The weighted mean of every metric (lists element-wise), weighted by
    ``weighting_metric_name``, which is left out."""
    weights = [float(next(iter(r.metric_records.values()))[weighting_metric_name])  # type: ignore[arg-type]
               for r in records]
    total = sum(weights)
    out = MetricRecord()
    for record, weight in zip(records, weights, strict=True):
        share = weight / total
        for metrics in record.metric_records.values():
            for key, value in metrics.items():
                if key == weighting_metric_name:
                    continue
                if isinstance(value, list):
                    previous = out.get(key, [0.0] * len(value))
                    out[key] = [p + v * share
                                for p, v in zip(previous, value, strict=True)]  # type: ignore
                else:
                    out[key] = out.get(key, 0.0) + value * share  # type: ignore[operator]
    return out


class FedAvg(Strategy):
    """Federated Averaging (McMahan et al., 2017) over messages.

    Parameters
    ----------
    fraction_train, fraction_evaluate:
        Share of the connected nodes sampled to train / evaluate each round (0.0 skips).
    min_train_nodes, min_evaluate_nodes:
        Nodes sampled at least.
    min_available_nodes:
        Nodes to wait for before sampling.
    weighted_by_key:
        The reply metric that weighs each node (``num-examples``).
    arrayrecord_key, configrecord_key:
        Names of the arrays and the config in the messages sent.
    train_metrics_aggr_fn, evaluate_metrics_aggr_fn:
        ``fn(contents, weighted_by_key) -> MetricRecord`` (default: weighted means).
    """

    streams = True
    """Whether train replies are folded as they arrive (a rule over the weighted mean)."""

    def __init__(self, fraction_train: float = 1.0, fraction_evaluate: float = 1.0,
                 min_train_nodes: int = 2, min_evaluate_nodes: int = 2,
                 min_available_nodes: int = 2, weighted_by_key: str = "num-examples",
                 arrayrecord_key: str = "arrays", configrecord_key: str = "config",
                 train_metrics_aggr_fn: MetricsAggrFn | None = None,
                 evaluate_metrics_aggr_fn: MetricsAggrFn | None = None) -> None:
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self.min_train_nodes = 0 if fraction_train == 0.0 else min_train_nodes
        self.min_evaluate_nodes = 0 if fraction_evaluate == 0.0 else min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.weighted_by_key = weighted_by_key
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        self.train_metrics_aggr_fn = train_metrics_aggr_fn or aggregate_metricrecords
        self.evaluate_metrics_aggr_fn = evaluate_metrics_aggr_fn or aggregate_metricrecords
        self._current: ArrayRecord | None = None  # the arrays this round's nodes got

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(fraction_train={self.fraction_train}, "
                f"fraction_evaluate={self.fraction_evaluate}, "
                f"min_train_nodes={self.min_train_nodes}, "
                f"min_evaluate_nodes={self.min_evaluate_nodes})")

    # Configure ---------------------------------------------------------------------------

    def _messages(self, fraction: float, minimum: int, arrays: ArrayRecord,
                  config: ConfigRecord, grid: Grid, message_type: str,
                  server_round: int) -> list[Message]:
        if fraction == 0.0:
            return []
        # The share is taken of the nodes there once min_available_nodes have joined, so a
        # node that joins late still counts (Flower takes it of those there before waiting).
        sample_nodes(grid, self.min_available_nodes, 0)
        sample_size = max(int(len(list(grid.get_node_ids())) * fraction), minimum)
        node_ids, _ = sample_nodes(grid, self.min_available_nodes, sample_size)
        return self._to_nodes(server_round, arrays, config, node_ids, message_type)

    def _to_nodes(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                  node_ids: list[int], message_type: str) -> list[Message]:
        """One message per node with the arrays and the config (``server-round`` added)."""
        config["server-round"] = server_round
        content = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return [Message(content, node_id, message_type, group_id=str(server_round))
                for node_id in node_ids]  # one content: encoded once for all nodes

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self._messages(self.fraction_train, self.min_train_nodes, arrays, config, grid,
                              MessageType.TRAIN, server_round)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord,
                           config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self._messages(self.fraction_evaluate, self.min_evaluate_nodes, arrays, config,
                              grid, MessageType.EVALUATE, server_round)

    # Aggregate ---------------------------------------------------------------------------

    def rule(self, results: list[tuple[NDArrays, int]]) -> NDArrays:
        """The aggregation rule over ``[(arrays, weight)]``: the weighted mean here."""
        return aggregate_weighted_mean(results)

    def select(self, results: list[tuple[NDArrays, int]]) -> list[int]:
        """Which replies the rule and the metrics use (all, here; Krum picks)."""
        return list(range(len(results)))

    def conclude_train(self, server_round: int, aggregate: NDArrays,
                       current: ArrayRecord | None) -> NDArrays:
        """Turn the rule's output into the new global arrays; server optimizers step here."""
        return aggregate

    def _weight(self, reply: Message) -> float | None:
        """The reply's weight, or None (logged) for a reply that cannot be aggregated."""
        if reply.has_error():
            log.info("reply from node %d carries an error: %s", reply.metadata.src_node_id,
                     reply.error.reason)
            return None
        metric_records = list(reply.content.metric_records.values())
        if len(metric_records) != 1:
            log.warning("reply from node %d has %d MetricRecords, expected one; skipped",
                        reply.metadata.src_node_id, len(metric_records))
            return None
        weight = metric_records[0].get(self.weighted_by_key)
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or weight < 0:
            log.warning("reply from node %d has no usable %r metric (got %r); skipped",
                        reply.metadata.src_node_id, self.weighted_by_key, weight)
            return None
        return float(weight)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        results: list[tuple[NDArrays, int]] = []
        contents: list[RecordDict] = []
        keys, first_layout = self._sent_layout()
        for reply in replies:
            weight = self._weight(reply)
            if weight is None or not self._one_array_record(reply):
                continue
            record = next(iter(reply.content.array_records.values()))
            layout = [(k, a.shape, a.dtype) for k, a in record.items()]
            if keys is None:
                keys, first_layout = list(record.keys()), layout
            elif layout != first_layout:
                log.warning("reply from node %d has arrays named, shaped or typed unlike the "
                            "arrays sent; skipped", reply.metadata.src_node_id)
                continue
            results.append(([a.numpy() for a in record.values()], weight))  # type: ignore
            contents.append(reply.content)
        if not results or keys is None:
            return None, None
        chosen = self.select(results)
        if not chosen:
            return None, None
        results = [results[i] for i in chosen]
        contents = [contents[i] for i in chosen]
        aggregate = self.conclude_train(server_round, self.rule(results), self._current)
        return (_record(keys, aggregate),
                self.train_metrics_aggr_fn(contents, self.weighted_by_key))

    def _sent_layout(self) -> tuple[list[str] | None, list[tuple[str, tuple[int, ...], str]]]:
        """Names, shapes and dtypes the replies' arrays must have: those of the arrays sent
        this round (unknown when none were sent: then the first reply's)."""
        if not self._current:
            return None, []
        return (list(self._current.keys()),
                [(k, a.shape, a.dtype) for k, a in self._current.items()])

    def _one_array_record(self, reply: Message) -> bool:
        if len(reply.content.array_records) == 1:
            return True
        log.warning("reply from node %d has %d ArrayRecords, expected one; skipped",
                    reply.metadata.src_node_id, len(reply.content.array_records))
        return False

    def train_round(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                    grid: Grid, timeout: float | None
                    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        self._current = arrays
        # A subclass that replaces aggregate_train must see every reply itself.
        if (not self.streams or not isinstance(grid, ProxyGrid)
                or type(self).aggregate_train is not FedAvg.aggregate_train):
            return super().train_round(server_round, arrays, config, grid, timeout)
        fold = _WeightedMeanFold(self)
        grid.send_and_fold(self.configure_train(server_round, arrays, config, grid),
                           fold.add, timeout=timeout)
        if fold.keys_ is None:
            return None, None
        mean = weighted_mean_from_sums(fold.sums_, fold.total_, fold.like_)
        aggregate = self.conclude_train(server_round, mean, arrays)
        return (_record(fold.keys_, aggregate),
                self.train_metrics_aggr_fn(fold.contents_, self.weighted_by_key))

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        contents = [r.content for r in replies if self._weight(r) is not None]
        if not contents:
            return None
        return self.evaluate_metrics_aggr_fn(contents, self.weighted_by_key)


class _WeightedMeanFold:
    """Running weighted sums of the train replies, folded one by one as they arrive."""

    def __init__(self, strategy: FedAvg) -> None:
        self.strategy = strategy
        self.sums_: NDArrays = []
        self.like_: NDArrays = []
        self.total_ = 0.0
        self.keys_: list[str] | None = None
        # What every reply's arrays must look like: the arrays sent, else the first reply's.
        self.layout_ = strategy._sent_layout()[1]
        self.contents_: list[RecordDict] = []

    def add(self, reply: Message, arrays: NDArrays | None) -> None:
        weight = self.strategy._weight(reply)
        if weight is None or arrays is None or not self.strategy._one_array_record(reply):
            return
        record = next(iter(reply.content.array_records.values()))
        layout = [(k, a.shape, a.dtype) for k, a in record.items()]
        if not self.layout_:
            self.layout_ = layout
        if layout != self.layout_:
            log.warning("reply from node %d has arrays named, shaped or typed unlike the "
                        "arrays sent; skipped", reply.metadata.src_node_id)
            return
        if self.keys_ is None:
            self.keys_ = list(record.keys())
            self.sums_ = start_weighted(arrays, weight)
            self.like_ = [np.empty(0, dtype=a.dtype) for a in arrays]
        else:
            self.sums_ = add_weighted(self.sums_, arrays, weight)
        self.total_ += weight
        # The metrics are kept (small); the arrays are released by the grid after this.
        self.contents_.append(RecordDict(dict(reply.content.metric_records)))


def _record(keys: list[str], arrays: NDArrays) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(a)) for k, a in zip(keys, arrays, strict=True)})
