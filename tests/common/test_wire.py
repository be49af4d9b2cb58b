"""The zero-copy path for model-carrying messages agrees with protobuf on every input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsilo.common import (
    Code,
    EvaluateIns,
    FitIns,
    FitRes,
    GetParametersRes,
    ProtocolError,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
    serde,
    wire,
)
from fedsilo.common.typing import Parameters
from fedsilo.proto import transport_pb2 as pb

scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=8))
configs = st.dictionaries(st.text(max_size=6), scalars, max_size=3)
tensor_lists = st.lists(st.binary(max_size=300), max_size=4)
statuses = st.builds(Status, st.sampled_from(list(Code)), st.text(max_size=10))


def protobuf_bytes_of(message: object) -> bytes:
    """What protobuf alone serializes for a dataclass message."""
    if isinstance(message, FitIns | EvaluateIns):
        return serde.server_message_to_proto(message).SerializeToString()
    return serde.client_message_to_proto(message).SerializeToString()  # type: ignore[arg-type]


@given(tensors=tensor_lists, tensor_type=st.text(max_size=12), config=configs,
       fit=st.booleans())
@settings(max_examples=200, deadline=None)
def test_instructions_encode_like_protobuf(tensors: list[bytes], tensor_type: str,
                                           config: dict, fit: bool) -> None:
    cls = FitIns if fit else EvaluateIns
    ins = cls(Parameters(tensors, tensor_type), config)
    fast = serde.server_message_to_bytes(ins)
    # Same message by protobuf's reading, and the same bytes when no map is involved.
    assert pb.ServerMessage.FromString(fast) == pb.ServerMessage.FromString(
        protobuf_bytes_of(ins))
    if len(config) <= 1:
        assert fast == protobuf_bytes_of(ins)
    assert serde.server_message_from_bytes(fast) == ins


@given(tensors=tensor_lists, tensor_type=st.text(max_size=12), metrics=configs,
       status=statuses, num_examples=st.integers(-(2**63), 2**63 - 1), fit=st.booleans())
@settings(max_examples=200, deadline=None)
def test_replies_encode_like_protobuf(tensors: list[bytes], tensor_type: str, metrics: dict,
                                      status: Status, num_examples: int, fit: bool) -> None:
    params = Parameters(tensors, tensor_type)
    res = (FitRes(status, params, num_examples, metrics) if fit
           else GetParametersRes(status, params))
    fast = serde.client_message_to_bytes(res)
    assert pb.ClientMessage.FromString(fast) == pb.ClientMessage.FromString(
        protobuf_bytes_of(res))
    if len(metrics) <= 1:
        assert fast == protobuf_bytes_of(res)
    assert serde.client_message_from_bytes(fast) == res


def _protobuf_reading(decode, parse, data: bytes):  # type: ignore[no-untyped-def]
    """The dataclass protobuf's own parser gives, or the ProtocolError it raises."""
    try:
        return parse(serde._parse(pb.ClientMessage if decode is serde.client_message_from_bytes
                                  else pb.ServerMessage, data))
    except ProtocolError as exc:
        return type(exc)


@pytest.mark.parametrize("decode,parse", [
    (serde.client_message_from_bytes, serde.client_message_from_proto),
    (serde.server_message_from_bytes, serde.server_message_from_proto),
])
@given(data=st.binary(max_size=200))
@settings(max_examples=400, deadline=None)
def test_any_bytes_decode_as_protobuf_would(decode, parse, data: bytes) -> None:  # type: ignore[no-untyped-def]
    expected = _protobuf_reading(decode, parse, data)
    try:
        got = decode(data)
    except ProtocolError as exc:
        got = type(exc)
    assert got == expected


@pytest.mark.parametrize("cut", [1, 2, 5, 40, -1])
def test_truncated_model_message_is_refused(cut: int) -> None:
    data = serde.client_message_to_bytes(FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters(
        [np.arange(50, dtype=np.float32)]), 3, {}))
    with pytest.raises(ProtocolError):
        serde.client_message_from_bytes(data[:cut])


def test_received_tensors_are_views_of_the_message() -> None:
    arrays = [np.arange(1000, dtype=np.float32), np.ones((3, 4))]
    data = serde.client_message_to_bytes(
        FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), 10, {"a": 1}))
    res = serde.client_message_from_bytes(data)
    assert isinstance(res, FitRes)
    for tensor in res.parameters.tensors:
        assert isinstance(tensor, memoryview)
        assert tensor.obj is data  # no copy: a window on the received buffer
    for got, sent in zip(parameters_to_ndarrays(res.parameters), arrays, strict=True):
        np.testing.assert_array_equal(got, sent)


def test_varint_encoding_matches_the_spec() -> None:
    # Examples from the protobuf encoding guide: 1 -> 01, 150 -> 96 01.
    assert wire.encode_varint(1) == b"\x01"
    assert wire.encode_varint(150) == b"\x96\x01"
    assert wire.encode_varint(2**63) == b"\x80" * 9 + b"\x01"
    with pytest.raises(ValueError):
        wire.encode_varint(-1)


def test_overlong_varint_is_malformed() -> None:
    with pytest.raises(ProtocolError, match="varint"):
        list(wire.iter_fields(memoryview(b"\x08" + b"\xff" * 11), 0, 12))
