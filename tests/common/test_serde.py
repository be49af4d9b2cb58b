from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedsilo.common import (
    Code,
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    ProtocolError,
    ReconnectIns,
    Status,
    ndarrays_to_parameters,
    serde,
)
from fedsilo.proto import transport_pb2 as pb

PARAMS = ndarrays_to_parameters([np.arange(4, dtype=np.float32), np.eye(2)])
CONFIG = {"round": 3, "lr": 0.1, "name": "north", "flag": True, "blob": b"\x00\x01", "neg": -5}
OK = Status(Code.OK, "Success")

INSTRUCTIONS = [
    FitIns(PARAMS, CONFIG),
    EvaluateIns(PARAMS, {}),
    GetParametersIns({"x": 1}),
    GetPropertiesIns({}),
    ReconnectIns(seconds=5),
    ReconnectIns(seconds=None),
]
REPLIES = [
    FitRes(OK, PARAMS, 120, {"loss": 0.5}),
    EvaluateRes(OK, 0.25, 30, {"accuracy": 0.75, "n": 3}),
    GetParametersRes(OK, PARAMS),
    GetPropertiesRes(Status(Code.GET_PROPERTIES_NOT_IMPLEMENTED, "no"), {}),
    DisconnectRes(reason="ACK"),
    DisconnectRes(reason="RECONNECT"),
]


@pytest.mark.parametrize("ins", INSTRUCTIONS, ids=lambda i: type(i).__name__)
def test_server_messages_round_trip(ins: serde.ServerInstruction) -> None:
    assert serde.server_message_from_bytes(serde.server_message_to_bytes(ins)) == ins


@pytest.mark.parametrize("res", REPLIES, ids=lambda r: type(r).__name__)
def test_client_messages_round_trip(res: serde.ClientReply) -> None:
    assert serde.client_message_from_bytes(serde.client_message_to_bytes(res)) == res


def test_scalar_kinds_follow_the_protocol_field_numbers() -> None:
    # bool must not be mistaken for int, ints travel as sint64, floats as double.
    assert serde.scalar_to_proto(True).WhichOneof("scalar") == "bool"
    assert serde.scalar_to_proto(7).WhichOneof("scalar") == "sint64"
    assert serde.scalar_to_proto(7.0).WhichOneof("scalar") == "double"
    assert serde.scalar_to_proto("a").WhichOneof("scalar") == "string"
    assert serde.scalar_to_proto(b"a").WhichOneof("scalar") == "bytes"
    fields = {f.name: f.number for f in pb.Scalar.DESCRIPTOR.fields}
    assert fields == {"double": 1, "uint64": 6, "sint64": 8, "bool": 13, "string": 14,
                      "bytes": 15}


def test_uint64_from_a_peer_reads_as_int() -> None:
    assert serde.scalar_from_proto(pb.Scalar(uint64=2**63 + 1)) == 2**63 + 1


def test_unsupported_config_value_names_the_fix() -> None:
    with pytest.raises(ProtocolError, match="convert it"):
        serde.server_message_to_bytes(FitIns(PARAMS, {"arr": np.zeros(2)}))  # type: ignore[dict-item]


def test_int_beyond_64_bits_is_refused() -> None:
    with pytest.raises(ProtocolError, match="64-bit"):
        serde.scalar_to_proto(2**70)


def test_empty_and_junk_client_messages_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="no known reply"):
        serde.client_message_from_bytes(b"")
    with pytest.raises(ProtocolError):
        serde.client_message_from_bytes(b"\xff\xff\xff\xff")


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        serde.client_message_from_bytes(data)
    except ProtocolError:
        pass


def test_wire_field_numbers_match_flower_protocol() -> None:
    server_fields = {f.name: f.number for f in pb.ServerMessage.DESCRIPTOR.fields}
    assert server_fields == {"reconnect_ins": 1, "get_properties_ins": 2,
                             "get_parameters_ins": 3, "fit_ins": 4, "evaluate_ins": 5}
    client_fields = {f.name: f.number for f in pb.ClientMessage.DESCRIPTOR.fields}
    assert client_fields == {"disconnect_res": 1, "get_properties_res": 2,
                             "get_parameters_res": 3, "fit_res": 4, "evaluate_res": 5}
    fit_res = {f.name: f.number for f in pb.ClientMessage.FitRes.DESCRIPTOR.fields}
    assert fit_res == {"status": 1, "parameters": 2, "num_examples": 3, "metrics": 4}
    assert pb.ClientMessage.EvaluateRes.DESCRIPTOR.fields_by_name["loss"].type == 2  # float
    assert pb.DESCRIPTOR.package == "flwr.proto"
    assert pb.DESCRIPTOR.services_by_name["FlowerService"].methods_by_name["Join"]
