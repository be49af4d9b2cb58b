"""Messages larger than one gRPC message, sent as a sequence of chunk frames.

gRPC and protobuf cap one message (protobuf at 2 GiB, gRPC at the configured
``grpc_max_message_length``). Between two fedsilo peers a message whose tensors
exceed the limit travels as frames: the first carries the message without its
tensor bytes (the *head*) and the tensors' sizes, every frame carries the next
slice of the tensors' concatenated bytes. No frame, and no protobuf message,
ever holds the whole set.

Negotiation keeps Flower peers out of it: a fedsilo client announces the
capability and its receive limit in the ``fedsilo-chunking`` metadata of its
``Join`` call, the server answers in its initial metadata. Flower ignores
metadata it does not know, and nobody chunks towards a peer that did not
announce, so a Flower peer only ever sees plain Flower messages.

A frame is a protobuf message with a single field numbered 15, a number the
Flower envelopes (``ServerMessage``, ``ClientMessage``) do not use; its first
byte (``0x7a``) tells a frame from a plain message.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from fedsilo.common import serde
from fedsilo.common import typing as t
from fedsilo.common.exceptions import ProtocolError

__all__ = [
    "FRAME_PREFIX",
    "METADATA_KEY",
    "ChunkAssembler",
    "TooLarge",
    "announce",
    "encode_frames",
    "is_frame",
    "parse_announcement",
]

METADATA_KEY = "fedsilo-chunking"
_VERSION = "v1"
FRAME_PREFIX = b"\x7a"  # field 15, length-delimited
FRAME_OVERHEAD = 1024  # room for a frame's own fields beside its slice
PROTOBUF_LIMIT = 2**31 - 1  # protobuf cannot encode or parse a larger message
DEFAULT_MAX_TRANSFER = 64 * 2**30  # the most bytes one chunked message may announce


def _frame_classes() -> tuple[Any, Any]:
    """Build the frame messages in a private descriptor pool (no generated code needed)."""
    file = descriptor_pb2.FileDescriptorProto(name="fedsilo/chunking.proto",
                                              package="fedsilo.chunking", syntax="proto3")
    label, kind = descriptor_pb2.FieldDescriptorProto, descriptor_pb2.FieldDescriptorProto
    chunk = file.message_type.add(name="Chunk")
    for number, (name, type_, repeated) in enumerate([
        ("transfer", kind.TYPE_UINT64, False),   # 1: id of the message the chunk belongs to
        ("index", kind.TYPE_UINT32, False),      # 2: position of this frame
        ("count", kind.TYPE_UINT32, False),      # 3: number of frames (first frame)
        ("head", kind.TYPE_BYTES, False),        # 4: the message without tensor bytes (first)
        ("sizes", kind.TYPE_UINT64, True),       # 5: each tensor's length (first frame)
        ("data", kind.TYPE_BYTES, False),        # 6: the next slice of tensor bytes
    ], start=1):
        chunk.field.add(name=name, number=number, type=type_,
                        label=label.LABEL_REPEATED if repeated else label.LABEL_OPTIONAL)
    frame = file.message_type.add(name="Frame")
    frame.field.add(name="chunk", number=15, type=kind.TYPE_MESSAGE,
                    label=label.LABEL_OPTIONAL, type_name=".fedsilo.chunking.Chunk")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    classes = message_factory.GetMessages([file], pool=pool)
    return classes["fedsilo.chunking.Chunk"], classes["fedsilo.chunking.Frame"]


_Chunk, _Frame = _frame_classes()
_transfers = itertools.count(1)


class TooLarge(ProtocolError):
    """A message over the size limit, towards a peer that cannot take chunks."""


# Negotiation ------------------------------------------------------------------


def announce(max_receive: int) -> tuple[tuple[str, str]]:
    """Metadata saying: this peer reads chunk frames of up to ``max_receive`` bytes."""
    return ((METADATA_KEY, f"{_VERSION};max={int(max_receive)}"),)


def parse_announcement(metadata: Sequence[tuple[str, Any]] | None) -> int | None:
    """The peer's frame limit from its metadata; None when it does not take chunks."""
    for key, value in metadata or ():
        if key != METADATA_KEY:
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        version, _, rest = text.partition(";")
        if version != _VERSION or not rest.startswith("max="):
            return None
        try:
            limit = int(rest[4:])
        except ValueError:
            return None
        return limit if limit > 2 * FRAME_OVERHEAD else None
    return None


# Sending ----------------------------------------------------------------------

Message = serde.ServerInstruction | serde.ClientReply


def encode_frames(
    message: Message, *, max_length: int, peer_limit: int | None, what: str
) -> list[bytes]:
    """Wire frames for ``message``: one plain message when it fits, else chunk frames.

    ``max_length`` is this side's message limit and ``peer_limit`` the limit the
    peer announced (None: the peer takes no chunks). ``what`` names the setting
    to raise in the error for a message that fits neither way.
    """
    tensors = _tensors(message)
    tensor_bytes = sum(len(x) for x in tensors)
    max_length = min(max_length, PROTOBUF_LIMIT)  # no setting lifts protobuf's own cap
    if tensor_bytes + FRAME_OVERHEAD < max_length or not tensors:
        data = _serialize(message)
        if len(data) <= max_length:
            return [data]
        size = len(data)
    else:
        size = tensor_bytes
    if peer_limit is None:
        raise TooLarge(
            f"the message holds about {size} bytes, over the message limit of {max_length} "
            f"bytes; raise {what} and the peer's own limit (grpc_max_message_length in Flower "
            "and fedsilo), or run fedsilo on both sides, which sends large parameter sets in "
            "chunks"
        )
    frame_size = min(max_length, peer_limit, PROTOBUF_LIMIT) - FRAME_OVERHEAD
    return list(_chunk_frames(message, tensors, frame_size))


def _chunk_frames(message: Message, tensors: list[bytes], frame_size: int) -> Iterator[bytes]:
    head = _serialize(_without_tensors(message))
    if len(head) >= frame_size:
        raise TooLarge(f"the message's configuration alone holds {len(head)} bytes, over the "
                       f"frame size of {frame_size} bytes")
    total = sum(len(x) for x in tensors)
    first_room = frame_size - len(head) - 10 * len(tensors)
    if first_room <= 0:
        raise TooLarge(f"{len(tensors)} tensors do not fit in frames of {frame_size} bytes")
    bounds = [0, min(first_room, total)]
    while bounds[-1] < total:
        bounds.append(min(bounds[-1] + frame_size, total))
    transfer = next(_transfers)
    stream = _ByteStream(tensors)
    for index in range(len(bounds) - 1):
        chunk = _Chunk(transfer=transfer, index=index, data=stream.read(bounds[index + 1]
                                                                       - bounds[index]))
        if index == 0:
            chunk.count = len(bounds) - 1
            chunk.head = head
            chunk.sizes.extend(len(x) for x in tensors)
        yield _Frame(chunk=chunk).SerializeToString()


class _ByteStream:
    """Reads consecutive slices across a list of byte strings without joining them."""

    def __init__(self, parts: list[bytes]) -> None:
        self._parts = parts
        self._part = 0
        self._offset = 0

    def read(self, size: int) -> bytes:
        pieces = []
        while size > 0 and self._part < len(self._parts):
            view = memoryview(self._parts[self._part])[self._offset:self._offset + size]
            pieces.append(view)
            size -= len(view)
            self._offset += len(view)
            if self._offset >= len(self._parts[self._part]):
                self._part, self._offset = self._part + 1, 0
        return b"".join(pieces)


# Receiving --------------------------------------------------------------------


def is_frame(data: bytes) -> bool:
    return data[:1] == FRAME_PREFIX


@dataclass
class _Transfer:
    transfer: int
    count: int
    head: bytes
    sizes: list[int]
    parts: list[bytes]
    received: int = 0
    next_index: int = 1


class ChunkAssembler:
    """Collects chunk frames into one message; refuses frames that break the sequence.

    ``decode`` turns the head's bytes into a message (``serde.client_message_from_bytes``
    on the server, ``serde.server_message_from_bytes`` on the client);
    ``max_transfer`` bounds what a peer may announce, so a hostile peer cannot
    make this side reserve memory it will never fill.
    """

    def __init__(self, decode: Any, *, max_transfer: int = DEFAULT_MAX_TRANSFER) -> None:
        self._decode = decode
        self._max_transfer = max_transfer
        self._current: _Transfer | None = None

    @property
    def busy(self) -> bool:
        """Whether a message is half received."""
        return self._current is not None

    def feed(self, data: bytes) -> Message | None:
        """Take one frame; return the message once its last frame arrived."""
        try:
            frame = _Frame.FromString(data)
        except Exception as exc:  # protobuf raises DecodeError (and others) on junk
            self._current = None
            raise ProtocolError(f"unreadable chunk frame: {exc}") from exc
        chunk = frame.chunk
        current = self._current
        if current is None:
            current = self._start(chunk)
        elif chunk.transfer != current.transfer or chunk.index != current.next_index:
            self._current = None
            raise ProtocolError(
                f"chunk {chunk.index} of transfer {chunk.transfer} arrived while frame "
                f"{current.next_index} of transfer {current.transfer} was due")
        else:
            current.next_index += 1
        current.received += len(chunk.data)
        if current.received > sum(current.sizes):
            self._current = None
            raise ProtocolError("chunk frames carry more bytes than their first frame announced")
        current.parts.append(chunk.data)
        if current.next_index < current.count:
            self._current = current
            return None
        self._current = None
        return self._finish(current)

    def _start(self, chunk: Any) -> _Transfer:
        if chunk.index != 0 or chunk.count < 1:
            raise ProtocolError(f"a chunked message must start with frame 0, got frame "
                                f"{chunk.index} of {chunk.count}")
        total = sum(chunk.sizes)
        if total > self._max_transfer:
            raise ProtocolError(f"a chunked message announced {total} bytes, over this side's "
                                f"limit of {self._max_transfer} bytes")
        return _Transfer(chunk.transfer, chunk.count, chunk.head, list(chunk.sizes), [])

    def _finish(self, transfer: _Transfer) -> Message:
        if transfer.received != sum(transfer.sizes):
            raise ProtocolError(f"chunk frames carried {transfer.received} bytes, their first "
                                f"frame announced {sum(transfer.sizes)}")
        message = self._decode(transfer.head)
        # Cut the tensors straight out of the frames' slices: one copy of the model, not two.
        stream = _ByteStream(transfer.parts)
        tensors = [stream.read(size) for size in transfer.sizes]
        transfer.parts.clear()
        return _with_tensors(message, tensors)


# Messages with and without their tensors ----------------------------------------


def _tensors(message: Message) -> list[bytes]:
    parameters = getattr(message, "parameters", None)
    return list(parameters.tensors) if isinstance(parameters, t.Parameters) else []


def _without_tensors(message: Message) -> Message:
    parameters = message.parameters  # type: ignore[union-attr]
    return replace(message, parameters=t.Parameters([], parameters.tensor_type))  # type: ignore


def _with_tensors(message: Message, tensors: list[bytes]) -> Message:
    parameters = getattr(message, "parameters", None)
    if not isinstance(parameters, t.Parameters):
        if tensors:
            raise ProtocolError(f"chunk frames carried tensors for a {type(message).__name__}, "
                                "which has no parameters")
        return message
    return replace(message, parameters=t.Parameters(tensors, parameters.tensor_type))  # type: ignore


def _serialize(message: Message) -> bytes:
    if isinstance(message, serde.ServerInstruction):  # type: ignore[misc,arg-type]
        return serde.server_message_to_bytes(message)  # type: ignore[arg-type]
    return serde.client_message_to_bytes(message)  # type: ignore[arg-type]
