"""Any RecordDict through the legacy instructions, between fedsilo peers.

Content that the plain legacy mapping (:mod:`fedsilo.app._legacy`) cannot carry (several
ArrayRecords, MetricRecords in an instruction, list values, message types other than
train and evaluate) travels as an envelope: every array of every ArrayRecord, in order,
as the instruction's or reply's tensors (``.npy`` bytes, as always), and one bytes value
under ``fedsilo.records`` in the config or metrics that says which records there are,
their names, keys and other values (JSON; bytes as base64). A plain Flower peer sees one
extra bytes value; a fedsilo peer rebuilds the same RecordDict.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from fedsilo.app._legacy import arrays_to_parameters, parameters_to_arrays
from fedsilo.app._recorddict import RecordDict
from fedsilo.app._records import ArrayRecord, ConfigRecord, MetricRecord
from fedsilo.common.exceptions import ProtocolError
from fedsilo.common.typing import Parameters

__all__ = ["ENVELOPE_KEY", "close_envelope", "open_envelope"]

ENVELOPE_KEY = "fedsilo.records"
_KINDS: dict[str, type[MetricRecord] | type[ConfigRecord]] = {"metric": MetricRecord,
                                                               "config": ConfigRecord}


def _encode_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return {"bytes-list": [base64.b64encode(v).decode("ascii") for v in value]}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "bytes" in value:
            return base64.b64decode(value["bytes"])
        return [base64.b64decode(v) for v in value["bytes-list"]]
    return value


def close_envelope(content: RecordDict, message_type: str) -> tuple[Parameters, bytes]:
    """The tensors and the ``fedsilo.records`` value that carry ``content``."""
    layout: list[dict[str, Any]] = []
    tensors: list[bytes] = []
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            tensors.extend(arrays_to_parameters(record).tensors)
            layout.append({"name": name, "kind": "array", "keys": list(record.keys())})
        else:
            kind = "metric" if isinstance(record, MetricRecord) else "config"
            layout.append({"name": name, "kind": kind,
                           "items": {k: _encode_value(v) for k, v in record.items()}})
    text = json.dumps({"type": message_type, "records": layout}, allow_nan=True)
    return Parameters(tensors, "numpy.ndarray"), text.encode()


def open_envelope(parameters: Parameters, envelope: object) -> tuple[RecordDict, str]:
    """The RecordDict and message type an envelope carries; ``ProtocolError`` if malformed."""
    if not isinstance(envelope, bytes):
        raise ProtocolError(f"{ENVELOPE_KEY} must be bytes, got {type(envelope).__name__}")
    try:
        layout = json.loads(envelope)
        content = RecordDict()
        position = 0
        for entry in layout["records"]:
            if entry["kind"] == "array":
                keys = list(entry["keys"])
                part = Parameters(parameters.tensors[position:position + len(keys)],
                                  parameters.tensor_type)
                if len(part.tensors) != len(keys):
                    raise ProtocolError("the envelope names more arrays than were sent")
                content[entry["name"]] = parameters_to_arrays(part, keys)
                position += len(keys)
            else:
                kind = _KINDS[entry["kind"]]
                content[entry["name"]] = kind({k: _decode_value(v)
                                               for k, v in entry["items"].items()})
        message_type = layout["type"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"malformed {ENVELOPE_KEY}: {exc}") from exc
    if position != len(parameters.tensors):
        raise ProtocolError(f"{len(parameters.tensors) - position} arrays were sent that the "
                            "envelope does not name")
    if not isinstance(message_type, str):
        raise ProtocolError("the envelope's message type is not a string")
    return content, message_type
