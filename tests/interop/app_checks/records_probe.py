"""Runs the same record and message misuses against one library's app API and prints, as
JSON, the exception each raises (type and text). Run as ``python records_probe.py flwr`` or
``... fedsilo`` in an interpreter that has that library."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable

import numpy as np


def cases(app: object) -> dict[str, Callable[[], object]]:
    A = app  # noqa: N806 - the module under test, like ``flwr.app``
    instruction = A.Message(A.RecordDict(), 1, "train")  # type: ignore[attr-defined]
    return {
        "metric_str_value": lambda: A.MetricRecord({"a": "x"}),
        "metric_bool_value": lambda: A.MetricRecord({"a": True}),
        "metric_mixed_list": lambda: A.MetricRecord({"a": [1, 2.0]}),
        "metric_dict_value": lambda: A.MetricRecord({"a": {"b": 1}}),
        "metric_int_key": lambda: A.MetricRecord({1: 1.0}),
        "metric_set_bad": lambda: A.MetricRecord().__setitem__("a", None),
        "config_none_value": lambda: A.ConfigRecord({"a": None}),
        "config_mixed_list": lambda: A.ConfigRecord({"a": [1, "x"]}),
        "config_int_key": lambda: A.ConfigRecord({2: 1}),
        "array_value_not_array": lambda: A.ArrayRecord({"a": A.MetricRecord()}),
        "array_int_key": lambda: A.ArrayRecord({3: A.Array(np.ones(2))}),
        "recorddict_bad_value": lambda: A.RecordDict({"a": {"x": 1}}),
        "recorddict_int_key": lambda: A.RecordDict({1: A.MetricRecord()}),
        "message_no_destination": lambda: A.Message(A.RecordDict()),
        "message_str_node": lambda: A.Message(A.RecordDict(), "1", "train"),
        "message_content_and_error": lambda: A.Message(A.RecordDict(), error=A.Error(0)),
        "message_reply_with_type": lambda: A.Message(A.RecordDict(), reply_to=instruction,
                                                     message_type="train"),
        "message_error_of_content": lambda: instruction.error,
        "message_content_of_error": lambda: A.Message(A.Error(0, "x"),
                                                      reply_to=instruction).content,
        "array_numpy_other_stype": lambda: A.Array("float32", [2], "torch.Tensor",
                                                   b"").numpy(),
        "message_type_instance": lambda: A.MessageType(),
        "valid_records": lambda: A.RecordDict({
            "m": A.MetricRecord({"a": 1, "b": [1.0, 2.0], "c": []}),
            "c": A.ConfigRecord({"s": "x", "b": True, "y": b"1", "l": ["a"]}),
            "a": A.ArrayRecord([np.ones(2)])}),
    }


def main() -> None:
    app = importlib.import_module(f"{sys.argv[1]}.app")
    if sys.argv[1] == "flwr":  # outside a run, Flower's messages need a task identity
        from flwr.supercore.task_identity import TaskIdentity

        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
    outcome = {}
    for name, case in cases(app).items():
        try:
            case()
        except Exception as exc:  # the probe records what each case raises
            outcome[name] = [[c.__name__ for c in type(exc).__mro__], str(exc)]
        else:
            outcome[name] = None
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
