"""FedXgbBagging and FedXgbCyclic over messages, with real XGBoost boosters: bagging appends
each node's new trees, so the merged booster's margin is the sum of the nodes' margins;
cyclic hands the model from node to node in a fixed order."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest

from fedsilo.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from fedsilo.serverapp.strategy import (
    FedXgbBagging,
    FedXgbCyclic,
    booster_bytes,
    booster_record,
)

xgb = pytest.importorskip("xgboost")

# base_score 0.5 is margin 0: a booster's margin is then the sum of its trees' outputs.
PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "base_score": 0.5,
          "nthread": 1, "tree_method": "hist", "seed": 0}


class NodeList:
    """The grid as the strategies' sampling sees it: the ids of the connected nodes."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 5))
    return x, (x[:, 0] + 0.5 * x[:, seed % 5] > 0).astype(float)


def _booster(seed: int) -> bytes:
    x, y = _data(seed)
    return bytes(xgb.train(PARAMS, xgb.DMatrix(x, label=y), num_boost_round=1)
                 .save_raw("json"))


def _margin(model: bytes, x: np.ndarray) -> np.ndarray:
    booster = xgb.Booster(params=PARAMS)
    booster.load_model(bytearray(model))
    return booster.predict(xgb.DMatrix(x), output_margin=True)


def _reply(to: Message, record: ArrayRecord, examples: int = 10, **metrics: float) -> Message:
    content = RecordDict({"arrays": record,
                          "metrics": MetricRecord({"num-examples": examples, **metrics})})
    return Message(content, reply_to=to)


def test_bagging_appends_every_nodes_trees_to_the_global_model() -> None:
    strategy = FedXgbBagging(min_available_nodes=2)
    start = _booster(0)
    sent = list(strategy.configure_train(2, booster_record(start), ConfigRecord(),
                                         NodeList([7, 8])))  # type: ignore[arg-type]
    assert sorted(m.metadata.dst_node_id for m in sent) == [7, 8]
    grown = [_booster(1), _booster(2)]
    replies = [_reply(m, booster_record(g), 10 * (i + 1), auc=0.5 + i / 10)
               for i, (m, g) in enumerate(zip(sent, grown, strict=True))]
    arrays, metrics = strategy.aggregate_train(2, replies)
    assert arrays is not None and metrics == {"auc": pytest.approx(0.5 + 0.2 / 3)}
    merged = booster_bytes(arrays)
    assert next(iter(arrays.values())).dtype == "uint8"
    x, _ = _data(9)
    assert np.allclose(_margin(merged, x), sum(_margin(m, x) for m in [start, *grown]),
                       atol=1e-5)
    trees = json.loads(merged)["learner"]["gradient_booster"]["model"]
    assert [t["id"] for t in trees["trees"]] == [0, 1, 2]
    assert trees["iteration_indptr"] == [0, 1, 2, 3]


def test_bagging_starts_from_the_first_reply_when_there_are_no_trees_yet() -> None:
    strategy = FedXgbBagging()
    sent = list(strategy.configure_train(1, booster_record(b""), ConfigRecord(),
                                         NodeList([1, 2])))  # type: ignore[arg-type]
    first, second = _booster(3), _booster(4)
    arrays, _ = strategy.aggregate_train(1, [_reply(sent[0], booster_record(first)),
                                             _reply(sent[1], booster_record(second))])
    assert arrays is not None
    x, _ = _data(5)
    assert np.allclose(_margin(booster_bytes(arrays), x), _margin(first, x) + _margin(second, x),
                       atol=1e-5)


def test_bagging_skips_a_reply_that_is_no_booster_and_keeps_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    strategy = FedXgbBagging()
    start = _booster(0)
    sent = list(strategy.configure_train(1, booster_record(start), ConfigRecord(),
                                         NodeList([1, 2, 3])))  # type: ignore[arg-type]
    good = _booster(6)
    two_arrays = ArrayRecord([np.frombuffer(good, dtype=np.uint8), np.zeros(2, np.uint8)])
    with caplog.at_level(logging.WARNING, logger="fedsilo.server"):
        arrays, _ = strategy.aggregate_train(1, [
            _reply(sent[0], booster_record(b"not a booster")),
            _reply(sent[1], two_arrays),
            _reply(sent[2], booster_record(good))])
    assert arrays is not None
    x, _ = _data(2)
    assert np.allclose(_margin(booster_bytes(arrays), x), _margin(start, x) + _margin(good, x),
                       atol=1e-5)
    warned = [r.getMessage() for r in caplog.records]
    assert any("not an XGBoost gbtree model" in w for w in warned)
    assert any("exactly one Array" in w for w in warned)


def test_bagging_refuses_a_global_model_of_several_arrays() -> None:
    with pytest.raises(ValueError, match="exactly one Array"):
        FedXgbBagging().configure_train(1, ArrayRecord([np.zeros(1), np.zeros(1)]),
                                        ConfigRecord(), NodeList([1, 2]))  # type: ignore


def test_cyclic_hands_the_model_to_one_node_after_another_in_a_fixed_order() -> None:
    random.seed(0)
    strategy = FedXgbCyclic()
    grid = NodeList([11, 12, 13])
    turns = []
    for server_round in range(1, 5):
        sent = list(strategy.configure_train(server_round, booster_record(b""), ConfigRecord(),
                                             grid))  # type: ignore[arg-type]
        assert len(sent) == 1 and sent[0].content["config"]["server-round"] == server_round
        evaluated = list(strategy.configure_evaluate(server_round, booster_record(b""),
                                                     ConfigRecord(), grid))  # type: ignore
        assert [m.metadata.dst_node_id for m in evaluated] == [sent[0].metadata.dst_node_id]
        turns.append(sent[0].metadata.dst_node_id)
    order = sorted(strategy.registered_nodes, key=strategy.registered_nodes.__getitem__)
    assert sorted(order) == [11, 12, 13]
    assert turns == [order[0], order[1], order[2], order[0]]
    grid.node_ids.append(14)  # a node that joins later takes its turn after the others
    later = [next(iter(strategy.configure_train(r, booster_record(b""), ConfigRecord(),
                                                grid))).metadata.dst_node_id  # type: ignore
             for r in (4, 5, 6, 7, 8)]
    assert later == [14, order[0], order[1], order[2], 14]


def test_cyclic_takes_the_nodes_model_as_the_global_model() -> None:
    strategy = FedXgbCyclic(fraction_evaluate=0.0)
    grid = NodeList([1, 2])
    sent = list(strategy.configure_train(1, booster_record(b""), ConfigRecord(),
                                         grid))  # type: ignore[arg-type]
    model = booster_record(_booster(1))
    arrays, metrics = strategy.aggregate_train(1, [_reply(sent[0], model, auc=0.75)])
    assert arrays is not None and booster_bytes(arrays) == booster_bytes(model)
    assert metrics == {"auc": 0.75}
    assert list(strategy.configure_evaluate(1, model, ConfigRecord(), grid)) == []  # type: ignore


@pytest.mark.parametrize("fraction", [0.5, 2.0])
def test_cyclic_takes_turns_with_every_node_or_none(fraction: float) -> None:
    with pytest.raises(ValueError, match="can only be set to 1.0 or 0.0 for FedXgbCyclic"):
        FedXgbCyclic(fraction_train=fraction)
