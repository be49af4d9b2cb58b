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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fedsilo.common import serde
from fedsilo.common import typing as t
from fedsilo.common.exceptions import ProtocolError
from fedsilo.common.memory import BufferPool
from fedsilo.common.parameter import Piece, pieces_size, tensor_pieces

__all__ = [
    "FRAME_PREFIX",
    "METADATA_KEY",
    "ChunkAssembler",
    "TooLarge",
    "announce",
    "encode_frames",
    "is_frame",
    "ParsedFrame",
    "parse_frame",
    "parse_announcement",
]

METADATA_KEY = "fedsilo-chunking"
_VERSION = "v1"
FRAME_PREFIX = b"\x7a"  # field 15, length-delimited
FRAME_OVERHEAD = 1024  # room for a frame's own fields beside its slice
PROTOBUF_LIMIT = 2**31 - 1  # protobuf cannot encode or parse a larger message
DEFAULT_MAX_TRANSFER = 64 * 2**30  # the most bytes one chunked message may announce
PACED_FRAME = 4 * 2**20  # frame size for large messages sent in frames to be read paced
PACED_ABOVE = 16 * 2**20  # replies with more tensor bytes go to a fedsilo server as frames


# The frame's schema, in protobuf terms (written and read by hand below; the tests check
# both against protobuf's own encoding of it):
#   message Chunk {
#     uint64 transfer = 1;        // id of the message the chunk belongs to
#     uint32 index = 2;           // position of this frame
#     uint32 count = 3;           // number of frames (first frame)
#     bytes head = 4;             // the message without tensor bytes (first frame)
#     repeated uint64 sizes = 5;  // each tensor's length (first frame)
#     bytes data = 6;             // the next slice of tensor bytes
#   }
#   message Frame { Chunk chunk = 15; }
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
    message: Message, *, max_length: int, peer_limit: int | None, what: str,
    paced_above: int | None = None, paced_frame: int | None = None,
) -> list[bytes]:
    """Wire frames for ``message``: one plain message when it fits, else chunk frames.

    ``max_length`` is this side's message limit and ``peer_limit`` the limit the
    peer announced (None: the peer takes no chunks). ``what`` names the setting
    to raise in the error for a message that fits neither way. A message whose
    tensors exceed ``paced_above`` bytes goes as frames of at most ``paced_frame``
    bytes to a peer that takes chunks, even when it would fit in one message: the
    receiver can then read large messages a few at a time (see the server's
    ``FederationServicer``) instead of holding all of them at once; the first of those
    frames carries the message without its tensors.
    """
    tensors = _tensors(message)
    tensor_bytes = sum(_sizes(tensors))
    max_length = min(max_length, PROTOBUF_LIMIT)  # no setting lifts protobuf's own cap
    paced_frame = PACED_FRAME if paced_frame is None else paced_frame
    if (peer_limit is not None and paced_above is not None and tensor_bytes > paced_above
            and paced_frame < max_length):
        frame_size = min(peer_limit, paced_frame) - FRAME_OVERHEAD
        if frame_size > FRAME_OVERHEAD:
            return list(_chunk_frames(message, tensors, frame_size, head_alone=True))
    if tensor_bytes + FRAME_OVERHEAD < max_length or not tensors:
        data = _serialize(message)
        if len(data) > max_length:  # the padding that places tensors may be what tips it
            data = _serialize(message, aligned=False)
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


def _chunk_frames(message: Message, tensors: list[list[Piece]], frame_size: int,
                  head_alone: bool = False) -> Iterator[bytes]:
    """``head_alone``: the first frame carries the head and no tensor bytes, so a receiver
    that reads the first frame of many messages and the rest of a few at a time (a server
    pacing replies) holds the head and the tensors' sizes of each message that waits, not a
    frame."""
    head = _serialize(_without_tensors(message))
    if len(head) >= frame_size:
        raise TooLarge(f"the message's configuration alone holds {len(head)} bytes, over the "
                       f"frame size of {frame_size} bytes")
    sizes = _sizes(tensors)
    total = sum(sizes)
    first_room = frame_size - len(head) - 10 * len(tensors)
    if first_room <= 0:
        raise TooLarge(f"{len(tensors)} tensors do not fit in frames of {frame_size} bytes")
    bounds = [0, 0 if head_alone else min(first_room, total)]
    while bounds[-1] < total:
        bounds.append(min(bounds[-1] + frame_size, total))
    transfer = next(_transfers)
    stream = _ByteStream([piece for pieces in tensors for piece in pieces])
    for index in range(len(bounds) - 1):
        pieces = stream.views(bounds[index + 1] - bounds[index])
        if index == 0:
            yield _frame_bytes(transfer, 0, len(bounds) - 1, head, sizes, pieces)
        else:
            yield _frame_bytes(transfer, index, 0, b"", [], pieces)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _frame_bytes(transfer: int, index: int, count: int, head: bytes, sizes: list[int],
                 data: list[memoryview]) -> bytes:
    """One frame in protobuf's encoding of ``Frame{chunk: Chunk{...}}``, written directly:
    the tensor bytes are copied once, into the frame, instead of once into a protobuf
    message and again into its serialization."""
    fields = bytearray(b"\x08" + _varint(transfer))
    if index:
        fields += b"\x10" + _varint(index)
    if count:
        fields += b"\x18" + _varint(count)
    if head:
        fields += b"\x22" + _varint(len(head)) + head
    if sizes:
        packed = b"".join(_varint(size) for size in sizes)
        fields += b"\x2a" + _varint(len(packed)) + packed
    size = sum(len(x) for x in data)
    if size:
        fields += b"\x32" + _varint(size)
    total = len(fields) + size
    return b"".join([FRAME_PREFIX, _varint(total), fields, *data])


class _ByteStream:
    """Reads consecutive slices across a list of byte strings without joining them."""

    def __init__(self, parts: list[Piece]) -> None:
        self._parts = [memoryview(part).cast("B") for part in parts]
        self._part = 0
        self._offset = 0

    def views(self, size: int) -> list[memoryview]:
        """The next ``size`` bytes, as views of the parts (no copy)."""
        pieces = []
        while size > 0 and self._part < len(self._parts):
            view = self._parts[self._part][self._offset:self._offset + size]
            pieces.append(view)
            size -= len(view)
            self._offset += len(view)
            if self._offset >= len(self._parts[self._part]):
                self._part, self._offset = self._part + 1, 0
        return pieces


# Receiving --------------------------------------------------------------------


def is_frame(data: bytes) -> bool:
    return data[:1] == FRAME_PREFIX


@dataclass
class ParsedFrame:
    """One parsed frame; ``data`` is a view of the frame's bytes, not a copy."""

    transfer: int = 0
    index: int = 0
    count: int = 0
    head: bytes = b""
    sizes: list[int] = field(default_factory=list)
    data: memoryview = field(default_factory=lambda: memoryview(b""))


def _read_varint(view: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ProtocolError("unreadable chunk frame: a number runs past its field")
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def parse_frame(data: bytes | memoryview) -> ParsedFrame:
    """Read one frame (``Frame{chunk: Chunk{...}}`` in protobuf's encoding) without copying
    its tensor bytes; ProtocolError for anything else."""
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    end = len(view)
    if end < 2 or view[0] != FRAME_PREFIX[0]:
        raise ProtocolError("unreadable chunk frame: it does not start with field 15")
    length, pos = _read_varint(view, 1, end)
    if pos + length != end:
        raise ProtocolError(f"unreadable chunk frame: it announces {length} bytes and holds "
                            f"{end - pos}")
    chunk = ParsedFrame()
    while pos < end:
        tag, pos = _read_varint(view, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == 0 and number in (1, 2, 3, 5):
            value, pos = _read_varint(view, pos, end)
            if number == 1:
                chunk.transfer = value
            elif number == 2:
                chunk.index = value
            elif number == 3:
                chunk.count = value
            else:
                chunk.sizes.append(value)
        elif wire == 2 and number in (4, 5, 6):
            size, pos = _read_varint(view, pos, end)
            if pos + size > end:
                raise ProtocolError(f"unreadable chunk frame: field {number} runs past its end")
            body = view[pos:pos + size]
            pos += size
            if number == 4:
                chunk.head = bytes(body)
            elif number == 5:
                at = 0
                while at < size:
                    value, at = _read_varint(body, at, size)
                    chunk.sizes.append(value)
            else:
                chunk.data = body
        else:
            raise ProtocolError(f"unreadable chunk frame: unexpected field {number} (wire "
                                f"type {wire})")
    if chunk.index > 0xFFFFFFFF or chunk.count > 0xFFFFFFFF:
        raise ProtocolError("unreadable chunk frame: index or count out of range")
    return chunk


@dataclass
class _Transfer:
    transfer: int
    count: int
    head: bytes
    sizes: list[int]
    buffer: Any  # one uint8 array for the message's tensors, filled frame by frame
    received: int = 0
    next_index: int = 1


class ChunkAssembler:
    """Collects chunk frames into one message; refuses frames that break the sequence.

    ``decode`` turns the head's bytes into a message (``serde.client_message_from_bytes``
    on the server, ``serde.server_message_from_bytes`` on the client);
    ``max_transfer`` bounds what a peer may announce, so a hostile peer cannot
    make this side reserve memory it will never fill. Each frame's bytes are copied
    once, into one buffer per message (reserved, not touched, when the first frame
    arrives: memory is used only as frames fill it); the message's tensors are
    read-only views of that buffer.

    With ``private`` the views are writable and a buffer that nothing refers to any
    more is filled again by the next message of the same size, instead of new memory
    being faulted in for every message: for a client, whose model arrives every round
    and whose arrays need not be copied to be writable. ``pool`` shares kept buffers
    among assemblers (a server's streams); see ``BufferPool``.
    """

    def __init__(self, decode: Any, *, max_transfer: int = DEFAULT_MAX_TRANSFER,
                 private: bool = False, pool: BufferPool | None = None) -> None:
        self._decode = decode
        self._max_transfer = max_transfer
        self._private = private
        # A private assembler refills its one buffer; a shared pool serves many assemblers.
        self._pool = BufferPool(1) if private and pool is None else pool
        self._current: _Transfer | None = None
        self.last_view: Any = None  # the last message's own view of its buffer (not private)

    @property
    def busy(self) -> bool:
        """Whether a message is half received."""
        return self._current is not None

    @property
    def announced(self) -> int:
        """The tensor bytes of the message being received, as its first frame announced;
        0 between messages."""
        return len(self._current.buffer) if self._current is not None else 0

    def feed(self, data: bytes) -> Message | None:
        """Take one frame; return the message once its last frame arrived."""
        try:
            chunk = parse_frame(data)
        except ProtocolError:
            self.abandon()
            raise
        current = self._current
        if current is None:
            current = self._current = self._start(chunk)
        elif chunk.transfer != current.transfer or chunk.index != current.next_index:
            self.abandon()
            raise ProtocolError(
                f"chunk {chunk.index} of transfer {chunk.transfer} arrived while frame "
                f"{current.next_index} of transfer {current.transfer} was due")
        else:
            current.next_index += 1
        size = len(chunk.data)
        if current.received + size > len(current.buffer):
            self.abandon()
            raise ProtocolError("chunk frames carry more bytes than their first frame announced")
        current.buffer[current.received:current.received + size] = chunk.data
        current.received += size
        if current.next_index < current.count:
            return None
        if current.received != len(current.buffer):
            self.abandon()
            raise ProtocolError(f"chunk frames carried {current.received} bytes, their first "
                                f"frame announced {len(current.buffer)}")
        self._current = None
        return self._finish(current)

    def check_first(self, data: bytes, limit: int | None = None) -> int:
        """The tensor bytes a first frame announces; ``ProtocolError`` for a frame that
        cannot start a message, and ``TooLarge`` for one that announces more than ``limit``
        (what the message answers implies), before any buffer is taken for it: a server
        checks a reply's first frame before it waits for a slot."""
        total = self._announced(parse_frame(data))
        if limit is not None and total > limit:
            raise TooLarge(f"a chunked message announced {total} bytes of tensors, over the "
                           f"{limit} bytes allowed for it")
        return total

    def abandon(self) -> None:
        """Forget the message being received; its buffer does not go to the next message."""
        current, self._current = self._current, None
        if current is not None and self._pool is not None:
            self._pool.discard(current.buffer)

    def _announced(self, chunk: ParsedFrame) -> int:
        """The tensor bytes a first frame announces, once it is a valid first frame."""
        if chunk.index != 0 or chunk.count < 1:
            raise ProtocolError(f"a chunked message must start with frame 0, got frame "
                                f"{chunk.index} of {chunk.count}")
        total = sum(chunk.sizes)
        if total > self._max_transfer:
            raise ProtocolError(f"a chunked message announced {total} bytes, over this side's "
                                f"limit of {self._max_transfer} bytes")
        return total

    def _start(self, chunk: ParsedFrame) -> _Transfer:
        total = self._announced(chunk)
        try:
            buffer = np.empty(total, dtype=np.uint8) if self._pool is None \
                else self._pool.take(total)
        except MemoryError as exc:
            raise ProtocolError(f"a chunked message announced {total} bytes, more than this "
                                "side can reserve") from exc
        return _Transfer(chunk.transfer, chunk.count, chunk.head, list(chunk.sizes), buffer)

    def _finish(self, transfer: _Transfer) -> Message:
        message = self._decode(transfer.head)
        # This message's own view of the buffer: every tensor refers to the buffer through
        # it, so it lives exactly as long as one of them does, even when the buffer is pooled.
        owner = transfer.buffer[:]
        whole = memoryview(owner)
        if not self._private:
            whole = whole.toreadonly()
        bounds = np.cumsum([0, *transfer.sizes]).tolist()
        tensors = [whole[start:stop] for start, stop in itertools.pairwise(bounds)]
        if not self._private:  # a private assembler's caller needs no handle on it
            self.last_view = owner
        return _with_tensors(message, tensors)  # type: ignore[arg-type]


# Messages with and without their tensors ----------------------------------------


def _tensors(message: Message) -> list[list[Piece]]:
    """Each tensor's bytes, as pieces (see ``tensor_pieces``)."""
    parameters = getattr(message, "parameters", None)
    return tensor_pieces(parameters) if isinstance(parameters, t.Parameters) else []


def _sizes(tensors: list[list[Piece]]) -> list[int]:
    return [pieces_size(pieces) for pieces in tensors]


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


def _serialize(message: Message, aligned: bool = True) -> bytes:
    if isinstance(message, serde.ServerInstruction):  # type: ignore[misc,arg-type]
        return serde.server_message_to_bytes(message, aligned)  # type: ignore[arg-type]
    return serde.client_message_to_bytes(message, aligned)  # type: ignore[arg-type]
