"""Tensor bytes in and out of protobuf wire format without copying them.

Python's protobuf copies a ``bytes`` field when it parses a message and again every time the
field is read, so a 40 MB update costs three copies before numpy sees it; serializing costs
two. The messages that carry a model (``FitIns``, ``EvaluateIns``, ``FitRes``,
``GetParametersRes``) are therefore split here: the ``Parameters`` field is located in the
wire bytes and its tensors are returned as ``memoryview`` slices of the received buffer, or
written straight into the output; the small remainder (status, config, metrics) still goes
through protobuf. The output is what protobuf would produce for the same message.

Wire format facts used (protobuf encoding spec): a field is a varint key ``number << 3 |
wire_type``; wire type 0 is a varint, 1 is 8 bytes, 2 is a varint length and that many bytes,
5 is 4 bytes. ``Parameters`` is ``{repeated bytes tensors = 1; string tensor_type = 2}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from fedsilo.common.exceptions import ProtocolError

__all__ = [
    "Field",
    "Split",
    "byte_length",
    "encode_key",
    "encode_length_delimited",
    "encode_parameters",
    "encode_varint",
    "iter_fields",
    "split_parameters",
]

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


@dataclass(frozen=True)
class Field:
    """One field as found in a buffer: for wire type 2 ``start:end`` is its payload."""

    number: int
    wire_type: int
    key_start: int
    start: int
    end: int


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
        if pos >= end:
            raise ProtocolError("truncated message: a varint runs past the end")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise ProtocolError("malformed message: a varint is longer than 10 bytes")


def iter_fields(buf: memoryview, start: int, end: int) -> Iterator[Field]:
    """Walk the fields of the message in ``buf[start:end]``; raise on anything malformed."""
    pos = start
    while pos < end:
        key_start = pos
        key, pos = _read_varint(buf, pos, end)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtocolError("malformed message: field number 0")
        if wire_type == VARINT:
            _, value_end = _read_varint(buf, pos, end)
        elif wire_type == LENGTH_DELIMITED:
            length, pos = _read_varint(buf, pos, end)
            value_end = pos + length
        elif wire_type == FIXED64:
            value_end = pos + 8
        elif wire_type == FIXED32:
            value_end = pos + 4
        else:
            raise ProtocolError(f"unsupported wire type {wire_type} in field {number}")
        if value_end > end:
            raise ProtocolError(f"truncated message: field {number} runs past the end")
        yield Field(number, wire_type, key_start, pos, value_end)
        pos = value_end


@dataclass(frozen=True)
class Split:
    """A message that carries ``Parameters``, taken apart.

    ``kind`` is the envelope's oneof field number; ``rest`` is the inner message's bytes
    without its parameters field (for protobuf to parse); ``tensors`` are zero-copy views.
    """

    kind: int
    rest: bytes
    tensors: list[memoryview]
    tensor_type: str


def split_parameters(data: bytes | memoryview, carriers: dict[int, int]) -> Split | None:
    """Find the parameters in an envelope whose oneof field (a key of ``carriers``) carries
    them in the inner field ``carriers[kind]``.

    Returns None when the envelope holds another kind of message, or is unusual in a way only
    protobuf's own merge rules settle (a field repeated where protobuf would merge); the
    caller then parses it the ordinary way. Malformed bytes raise ``ProtocolError``.
    """
    buf = memoryview(data)
    outer = list(iter_fields(buf, 0, len(buf)))
    kinds = [f for f in outer if f.wire_type == LENGTH_DELIMITED and f.number in carriers]
    if len(kinds) != 1 or len(outer) != 1:
        return None
    envelope = kinds[0]
    inner_number = carriers[envelope.number]
    inner = list(iter_fields(buf, envelope.start, envelope.end))
    params = [f for f in inner if f.number == inner_number]
    if len(params) != 1 or params[0].wire_type != LENGTH_DELIMITED:
        return None if params else Split(envelope.number, bytes(buf[envelope.start:envelope.end]),
                                         [], "")
    field = params[0]
    rest = b"".join((buf[envelope.start:field.key_start], buf[field.end:envelope.end]))
    tensors: list[memoryview] = []
    tensor_type = ""
    for item in iter_fields(buf, field.start, field.end):
        if item.number == 1:
            if item.wire_type != LENGTH_DELIMITED:
                raise ProtocolError("malformed Parameters: a tensor is not length-delimited")
            tensors.append(buf[item.start:item.end])
        elif item.number == 2:
            if item.wire_type != LENGTH_DELIMITED:
                raise ProtocolError("malformed Parameters: tensor_type is not a string")
            try:
                tensor_type = str(buf[item.start:item.end], "utf-8")
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"malformed Parameters: tensor_type is not UTF-8: {exc}") \
                    from exc
    return Split(envelope.number, rest, tensors, tensor_type)


# Encoding ----------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints here are lengths and keys, never negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_key(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def encode_length_delimited(number: int, pieces: Sequence[bytes | memoryview]) -> list[
        bytes | memoryview]:
    """The pieces of one length-delimited field whose payload is ``pieces`` joined."""
    return [encode_key(number, LENGTH_DELIMITED), encode_varint(byte_length(pieces)), *pieces]


def byte_length(pieces: Sequence[bytes | memoryview]) -> int:
    """The bytes of ``pieces`` joined."""
    total = 0
    for piece in pieces:  # a plain loop: this runs for every field of every message
        total += len(piece) if isinstance(piece, bytes | bytearray) else memoryview(piece).nbytes
    return total


def encode_parameters(tensors: Sequence[Sequence[bytes | memoryview]], tensor_type: str) -> list[
        bytes | memoryview]:
    """The pieces of a serialized ``Parameters`` message (not joined: no copy yet), from each
    tensor's bytes given as pieces."""
    pieces: list[bytes | memoryview] = []
    for tensor in tensors:
        pieces += encode_length_delimited(1, tensor)
    if tensor_type:
        pieces += encode_length_delimited(2, [tensor_type.encode("utf-8")])
    return pieces
