"""How messages ride the legacy instructions: plain when they fit, an envelope otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from fedsilo.app._envelope import close_envelope, open_envelope
from fedsilo.app._legacy import (
    NO_LOSS_KEY,
    LegacyIncompatible,
    evaluate_reply_to_res,
    evaluateres_to_content,
    fitres_to_content,
    split_instruction,
    train_reply_to_res,
)
from fedsilo.common.exceptions import ProtocolError


def test_a_train_reply_maps_to_fitres_and_back_unchanged() -> None:
    content = RecordDict({"arrays": ArrayRecord([np.arange(3.0)]),
                          "metrics": MetricRecord({"acc": 0.5, "num-examples": 12})})
    res = train_reply_to_res(content)
    assert (res.num_examples, res.metrics) == (12, {"acc": 0.5})
    back = fitres_to_content(res, ["w"])
    assert list(back["arrays"]) == ["w"]
    assert np.array_equal(back["arrays"]["w"].numpy(), np.arange(3.0))
    # The bytes are shared, not copied.
    assert back["arrays"]["w"].data is content["arrays"]["0"].data
    assert dict(back["metrics"]) == {"acc": 0.5, "num-examples": 12}


def test_an_evaluate_reply_without_loss_gets_none_added() -> None:
    content = RecordDict({"metrics": MetricRecord({"eval_acc": 0.9, "num-examples": 4})})
    res = evaluate_reply_to_res(content)
    assert res.metrics[NO_LOSS_KEY] is True
    assert dict(evaluateres_to_content(res)["metrics"]) == {"eval_acc": 0.9, "num-examples": 4}


def test_a_legacy_clients_loss_becomes_a_metric() -> None:
    content = RecordDict({"metrics": MetricRecord({"loss": 0.25, "num-examples": 4})})
    res = evaluate_reply_to_res(content)
    assert res.loss == 0.25
    assert dict(evaluateres_to_content(res)["metrics"]) == {"loss": 0.25, "num-examples": 4}


@pytest.mark.parametrize(("content", "reason"), [
    (RecordDict({"a": ArrayRecord(), "b": ArrayRecord()}), "2 ArrayRecords"),
    (RecordDict({"c": ConfigRecord({"l": [1, 2]})}), "lists"),
    (RecordDict({"m": MetricRecord({"x": 1})}), "MetricRecord"),
])
def test_content_the_legacy_protocol_cannot_carry_is_named(content: RecordDict,
                                                           reason: str) -> None:
    with pytest.raises(LegacyIncompatible, match=reason):
        split_instruction(content, "train")


def test_any_recorddict_survives_the_envelope() -> None:
    content = RecordDict({
        "model": ArrayRecord({"w": ArrayRecord([np.ones((2, 2), np.float32)])["0"]}),
        "extra": ArrayRecord([np.arange(4, dtype=np.int16), np.zeros(0)]),
        "m": MetricRecord({"a": 1, "b": [0.5, 1.5], "c": 2.0}),
        "c": ConfigRecord({"s": "x", "y": b"\x00\xff", "ys": [b"a", b"b"], "f": [True],
                           "i": 3}),
    })
    parameters, envelope = close_envelope(content, "query.stats")
    assert len(parameters.tensors) == 3
    rebuilt, message_type = open_envelope(parameters, envelope)
    assert message_type == "query.stats"
    assert list(rebuilt) == list(content)
    assert dict(rebuilt["m"]) == dict(content["m"])
    assert dict(rebuilt["c"]) == dict(content["c"])
    assert isinstance(rebuilt["m"]["a"], int) and isinstance(rebuilt["m"]["c"], float)
    assert list(rebuilt["model"]) == ["w"] and list(rebuilt["extra"]) == ["0", "1"]
    assert rebuilt["extra"]["0"].numpy().dtype == np.int16


def test_a_malformed_envelope_is_a_protocol_error() -> None:
    parameters, envelope = close_envelope(RecordDict({"a": ArrayRecord([np.zeros(1)])}), "x")
    with pytest.raises(ProtocolError, match="malformed"):
        open_envelope(parameters, b"{not json")
    with pytest.raises(ProtocolError, match="does not name"):
        open_envelope(type(parameters)(parameters.tensors * 2, parameters.tensor_type),
                      envelope)
    with pytest.raises(ProtocolError, match="must be bytes"):
        open_envelope(parameters, "text")
