"""Records, Message and Context: Flower's semantics, fedsilo's wire rules."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fedsilo.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)


def test_array_holds_npy_bytes_and_decodes_them_without_a_copy() -> None:
    source = np.arange(12, dtype=np.float32).reshape(3, 4)
    array = Array(source)
    assert (array.dtype, array.shape, array.stype) == ("float32", (3, 4), "numpy.ndarray")
    assert array.data.startswith(b"\x93NUMPY")
    decoded = array.numpy()
    assert np.array_equal(decoded, source)
    assert not decoded.flags.writeable
    # The view's memory lies inside the message bytes: nothing was copied.
    assert np.shares_memory(decoded, np.frombuffer(array.data, dtype=np.uint8))


def test_array_refuses_object_arrays_rather_than_pickling_them() -> None:
    with pytest.raises(ValueError, match="pickle"):
        Array(np.array([{"a": 1}], dtype=object))


def test_array_from_fields_round_trips() -> None:
    original = Array(np.ones((2,), dtype=np.int64))
    rebuilt = Array(original.dtype, original.shape, original.stype, original.data)
    assert np.array_equal(rebuilt.numpy(), [1, 1]) and rebuilt.numpy().dtype == np.int64


def test_to_numpy_ndarrays_hands_out_arrays_the_caller_may_change() -> None:
    record = ArrayRecord([np.zeros(3), np.ones((2, 2), dtype=np.float32)])
    assert list(record) == ["0", "1"]
    arrays = record.to_numpy_ndarrays()
    arrays[0] += 5  # Flower code does this; it must not touch the record
    assert np.array_equal(record["0"].numpy(), np.zeros(3))
    assert arrays[1].dtype == np.float32


def test_keep_input_false_moves_the_items() -> None:
    metrics = {"a": 1.0, "b": 2}
    record = MetricRecord(metrics, keep_input=False)
    assert metrics == {} and dict(record) == {"a": 1.0, "b": 2}
    ndarrays = [np.zeros(1)]
    ArrayRecord(ndarrays, keep_input=False)
    assert ndarrays == []


def test_recorddict_views_are_live() -> None:
    content = RecordDict({"arrays": ArrayRecord([np.zeros(1)]), "m": MetricRecord({"x": 1})})
    content.metric_records["n"] = MetricRecord({"y": 2.0})
    assert list(content) == ["arrays", "m", "n"]
    assert list(content.array_records) == ["arrays"]
    assert list(content.config_records) == []
    with pytest.raises(TypeError):
        content.config_records["c"] = MetricRecord()  # type: ignore[assignment]
    del content.metric_records["m"]
    assert "m" not in content


def test_count_bytes_counts_values_and_keys() -> None:
    assert MetricRecord({"ab": 1, "c": [1.0, 2.0]}).count_bytes() == 2 + 8 + 1 + 16
    assert ConfigRecord({"k": "abc", "t": True}).count_bytes() == 1 + 3 + 1 + 1


def test_instruction_and_reply_metadata() -> None:
    instruction = Message(RecordDict(), 7, MessageType.TRAIN, group_id="3", ttl=60)
    instruction.metadata.message_id = "m1"
    reply = Message(RecordDict({"m": MetricRecord({"x": 1})}), reply_to=instruction)
    meta = reply.metadata
    assert (meta.src_node_id, meta.dst_node_id) == (7, instruction.metadata.src_node_id)
    assert (meta.reply_to_message_id, meta.group_id, meta.message_type) == ("m1", "3", "train")
    assert 0 < meta.ttl <= 60
    # A reply never outlives its instruction.
    long_reply = Message(RecordDict(), reply_to=instruction, ttl=10_000)
    assert long_reply.metadata.ttl <= 60 + 1e-6
    assert instruction.metadata.created_at <= time.time()


def test_a_message_carries_content_or_an_error_never_both() -> None:
    instruction = Message(RecordDict(), 1, "evaluate")
    failed = Message(Error(code=2, reason="boom"), reply_to=instruction)
    assert failed.has_error() and not failed.has_content()
    assert failed.error.reason == "boom"
    with pytest.raises(ValueError, match="cannot have content"):
        failed.content = RecordDict()
    with pytest.raises(ValueError, match="cannot carry an error"):
        instruction.error = Error(code=1)
    assert instruction.create_reply(RecordDict()).metadata.dst_node_id == 0


def test_context_keeps_state_and_configs() -> None:
    context = Context(run_id=1, node_id=2, node_config={"partition-id": 0},
                      state=RecordDict(), run_config={"params.eta": 0.1})
    context.state["seen"] = MetricRecord({"rounds": 1})
    assert context.state["seen"]["rounds"] == 1
    assert context.run_config["params.eta"] == 0.1
