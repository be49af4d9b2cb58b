"""XGBoost over messages: the global model is the booster's serialized JSON, one uint8
``Array`` in an ArrayRecord (Flower's ``FedXgbBagging`` and ``FedXgbCyclic``).

The tree math is the legacy strategies' :func:`aggregate_xgb_bagging`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from fedsilo.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from fedsilo.server.strategy.aggregate import aggregate_xgb_bagging
from fedsilo.serverapp._grid import Grid
from fedsilo.serverapp.strategy._fedavg import FedAvg, MetricsAggrFn
from fedsilo.serverapp.strategy._strategy import sample_nodes

log = logging.getLogger("fedsilo.server")

__all__ = ["FedXgbBagging", "FedXgbCyclic", "booster_record", "booster_bytes"]


def booster_record(model: bytes) -> ArrayRecord:
    """The ArrayRecord that carries a serialized booster: its bytes as one uint8 Array."""
    return ArrayRecord([np.frombuffer(model, dtype=np.uint8)])


def booster_bytes(record: ArrayRecord) -> bytes:
    """The serialized booster an ArrayRecord carries; ValueError unless it holds one Array."""
    if len(record) != 1:
        raise ValueError(f"an XGBoost model travels as exactly one Array in its ArrayRecord, "
                         f"got {len(record)}")
    return next(iter(record.values())).numpy().tobytes()


class FedXgbBagging(FedAvg):
    """Federated XGBoost by bagging over messages: every sampled node grows trees on its
    data from the global model, and the server appends each node's new trees (its first
    ``num_parallel_tree`` trees) to the global model, in the order the replies come.

    Start it from ``booster_record(b"")`` (no trees yet): the first reply is then the
    start. Takes FedAvg's parameters; train and evaluate metrics are aggregated as
    FedAvg's. A reply that carries no booster, or bytes that are not XGBoost JSON, is
    skipped with a warning.
    """

    current_bst: bytes | None = None
    """The global model the nodes train from, as bytes, grown by each reply."""

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.current_bst = booster_bytes(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        contents: list[RecordDict] = []
        for reply in replies:
            if self._weight(reply) is None or not self._one_array_record(reply):
                continue
            node = reply.metadata.src_node_id
            try:
                model = booster_bytes(next(iter(reply.content.array_records.values())))
                grown = aggregate_xgb_bagging(self.current_bst, model)
            except ValueError as exc:
                log.warning("reply from node %d skipped: %s", node, exc)
                continue
            self.current_bst = grown
            contents.append(reply.content)
        if not contents or self.current_bst is None:
            return None, None
        return (booster_record(self.current_bst),
                self.train_metrics_aggr_fn(contents, self.weighted_by_key))


class FedXgbCyclic(FedAvg):
    """Federated XGBoost in turns over messages: each round one node, the next in a fixed
    order, boosts the global model further, and its model becomes the global model.

    The order is the order in which nodes were first sampled (a node that joins later
    comes after those before it); round ``r`` goes to node ``(r - 1) % n`` of the nodes
    connected. Evaluation asks the same node. ``fraction_train`` and ``fraction_evaluate``
    are 1.0 (take turns) or 0.0 (skip that phase).
    """

    def __init__(self, fraction_train: float = 1.0, fraction_evaluate: float = 1.0,
                 min_available_nodes: int = 2, weighted_by_key: str = "num-examples",
                 arrayrecord_key: str = "arrays", configrecord_key: str = "config",
                 train_metrics_aggr_fn: MetricsAggrFn | None = None,
                 evaluate_metrics_aggr_fn: MetricsAggrFn | None = None) -> None:
        for name, fraction in (("fraction_train", fraction_train),
                               ("fraction_evaluate", fraction_evaluate)):
            if fraction not in (0.0, 1.0):
                raise ValueError(f"{name} can only be set to 1.0 or 0.0 for FedXgbCyclic.")
        super().__init__(fraction_train, fraction_evaluate, 2, 2, min_available_nodes,
                         weighted_by_key, arrayrecord_key, configrecord_key,
                         train_metrics_aggr_fn, evaluate_metrics_aggr_fn)
        self.registered_nodes: dict[int, int] = {}
        """Each node's place in the turns, given when it is first sampled."""

    def _turn(self, grid: Grid, server_round: int, fraction: float) -> list[int]:
        if fraction == 0.0:
            return []
        sample_size = max(len(list(grid.get_node_ids())), self.min_train_nodes)
        node_ids, _ = sample_nodes(grid, self.min_available_nodes, sample_size)
        for node_id in node_ids:
            self.registered_nodes.setdefault(node_id, len(self.registered_nodes) + 1)
        ordered = sorted(node_ids, key=self.registered_nodes.__getitem__)
        return [ordered[(server_round - 1) % len(ordered)]]

    def state_dict(self) -> dict[str, Any]:
        return {"registered_nodes": [[n, place] for n, place in self.registered_nodes.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.registered_nodes = {int(n): int(place)
                                 for n, place in state.get("registered_nodes", [])}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self._to_nodes(server_round, arrays, config,
                              self._turn(grid, server_round, self.fraction_train),
                              MessageType.TRAIN)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord,
                           config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self._to_nodes(server_round, arrays, config,
                              self._turn(grid, server_round, self.fraction_evaluate),
                              MessageType.EVALUATE)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        contents = [r.content for r in replies
                    if self._weight(r) is not None and self._one_array_record(r)]
        if not contents:
            return None, None
        arrays = next(iter(contents[0].array_records.values()))
        return arrays, self.train_metrics_aggr_fn(contents, self.weighted_by_key)
