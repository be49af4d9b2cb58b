from __future__ import annotations

import io

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
    chunking,
    ndarrays_to_parameters,
    serde,
)
from fedsilo.common.parameter import (
    ArrayParameters,
    ndarray_to_bytes,
    padded_npy_header,
    parameters_to_ndarrays,
    replies_encoded_at_once,
    reply_parameters,
)
from fedsilo.common.typing import Parameters
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


@pytest.mark.parametrize("value", [2**63, 2**63 + 1, 2**64 - 1])
def test_ints_above_sint64_travel_as_uint64_both_ways(value: int) -> None:
    assert serde.scalar_to_proto(value).WhichOneof("scalar") == "uint64"
    reply = FitRes(Status(Code.OK, ""), PARAMS, 3, {"seed": value})
    assert serde.client_message_from_bytes(serde.client_message_to_bytes(reply)) == reply
    ins = FitIns(PARAMS, {"seed": value})
    assert serde.server_message_from_bytes(serde.server_message_to_bytes(ins)) == ins


def test_ints_within_sint64_still_travel_as_sint64() -> None:
    assert serde.scalar_to_proto(2**63 - 1).WhichOneof("scalar") == "sint64"
    assert serde.scalar_to_proto(-(2**63)).WhichOneof("scalar") == "sint64"


def test_unsupported_config_value_names_the_fix() -> None:
    with pytest.raises(ProtocolError, match="convert it"):
        serde.server_message_to_bytes(FitIns(PARAMS, {"arr": np.zeros(2)}))  # type: ignore[dict-item]


def test_int_beyond_64_bits_is_refused() -> None:
    with pytest.raises(ProtocolError, match="64-bit"):
        serde.scalar_to_proto(2**70)
    with pytest.raises(ProtocolError, match="64-bit"):
        serde.scalar_to_proto(2**64)


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


ALIGN_ARRAYS = [np.ones(3, np.float64), np.arange(5, dtype=np.int8), np.zeros(0, np.float32),
                np.full((2, 3), 1 + 2j, np.complex128), np.array(7.5, np.float64),
                np.array([True, False])]


def _reply(arrays: list[np.ndarray], kind: type) -> serde.ClientReply:
    with replies_encoded_at_once():
        parameters = reply_parameters(arrays)
    assert isinstance(parameters, ArrayParameters)
    if kind is FitRes:
        return FitRes(OK, parameters, 3, {"loss": 0.5, "name": "x" * 200})
    return GetParametersRes(OK, parameters)


# sizes around the points where a length prefix grows by a byte (128 and 16,384 bytes)
@pytest.mark.parametrize("size", [*range(0, 36), *range(4080, 4110), 16_380, 524_287,
                                  524_300, 2_097_151])
@pytest.mark.parametrize("kind", [FitRes, GetParametersRes])
def test_reply_tensors_start_aligned_in_the_message(size: int, kind: type) -> None:
    arrays = [np.arange(size, dtype=np.float32), *ALIGN_ARRAYS]
    reply = _reply(arrays, kind)
    for _ in range(2):  # worked out, then kept for the next reply of the same layout
        data = serde.client_message_to_bytes(reply)
        received = parameters_to_ndarrays(serde.client_message_from_bytes(data).parameters)
        start = np.frombuffer(data, np.uint8).ctypes.data
        for got, want in zip(received, arrays, strict=True):
            np.testing.assert_array_equal(got, want)
            assert (got.dtype, got.shape) == (want.dtype, want.shape)
            if got.size:
                assert (got.ctypes.data - start) % serde.ALIGNMENT == 0
                assert got.flags.aligned
        # Flower reads the same tensors with np.load
        message = pb.ClientMessage.FromString(data)
        inner = message.fit_res if kind is FitRes else message.get_parameters_res
        for tensor, want in zip(inner.parameters.tensors, arrays, strict=True):
            loaded = np.load(io.BytesIO(tensor), allow_pickle=False)
            np.testing.assert_array_equal(loaded, want)
            assert (loaded.dtype, loaded.shape) == (want.dtype, want.shape)


def test_tensors_given_as_bytes_are_sent_as_they_are() -> None:
    tensors = [ndarray_to_bytes(np.arange(size, dtype=np.float32)) for size in (1, 7, 100)]
    data = serde.client_message_to_bytes(FitRes(OK, Parameters(tensors, "numpy.ndarray"), 1, {}))
    assert list(pb.ClientMessage.FromString(data).fit_res.parameters.tensors) == tensors


def test_a_padded_header_keeps_its_version_and_reads_the_same() -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    for version in ((1, 0), (2, 0)):
        out = io.BytesIO()
        np.lib.format.write_array(out, array, version=version)
        whole = out.getvalue()
        header = whole[:len(whole) - array.nbytes]
        for pad in (1, 5, 15):
            padded = padded_npy_header(header, pad)
            assert padded is not None and len(padded) == len(header) + pad
            assert padded[:8] == header[:8]
            np.testing.assert_array_equal(np.load(io.BytesIO(padded + array.tobytes())), array)
    header = b"\x93NUMPY\x01\x00" + (65535).to_bytes(2, "little")
    assert padded_npy_header(header + b" " * 65534 + b"\n", 1) is None  # v1.0 cannot grow


@pytest.mark.parametrize("kind", [FitRes, GetParametersRes])
def test_every_single_tensor_size_is_placed_and_its_padding_kept(
    kind: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    # around 16 KiB a padding can lengthen one length prefix after another
    for size in range(3_900, 4_300):
        reply = _reply([np.zeros(size, np.float32)], kind)
        data = serde.client_message_to_bytes(reply)
        got = parameters_to_ndarrays(serde.client_message_from_bytes(data).parameters)[0]
        assert (got.ctypes.data - np.frombuffer(data, np.uint8).ctypes.data) % 16 == 0, size
    built: list[int] = []
    build = serde._aligned_pieces

    def counted(*args: object) -> object:
        built.append(1)
        return build(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(serde, "_aligned_pieces", counted)
    assert serde.client_message_to_bytes(reply) == data
    assert len(built) == 1  # the kept padding: built once, not worked out again


def test_a_reply_that_fits_only_unpadded_goes_unpadded() -> None:
    arrays = _reply([np.ones(n, np.float32) for n in (3, 5, 7)], FitRes).parameters
    reply = FitRes(OK, arrays, 3, {"note": "x" * 2_000})  # a message well over its tensors
    unpadded = serde.client_message_to_bytes(reply, aligned=False)
    assert len(serde.client_message_to_bytes(reply)) > len(unpadded)
    frames = chunking.encode_frames(reply, max_length=len(unpadded), peer_limit=None, what="x")
    assert frames == [unpadded]


def test_a_header_is_not_padded_past_what_numpy_reads() -> None:
    text_length = 9_995
    header = b"\x93NUMPY\x01\x00" + text_length.to_bytes(2, "little")
    header += b"{}" + b" " * (text_length - 3) + b"\n"
    assert padded_npy_header(header, 5) is not None
    assert padded_npy_header(header, 6) is None
