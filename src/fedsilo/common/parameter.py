"""Conversion between numpy arrays and serialized ``Parameters``.

Each tensor travels as the bytes of a ``.npy`` file (``tensor_type =
"numpy.ndarray"``), the format Flower peers use. Object arrays are refused:
decoding them would need pickle, which runs arbitrary code.
"""

from __future__ import annotations

import functools
import io
import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from fedsilo.common import wire
from fedsilo.common.exceptions import SerializationError
from fedsilo.common.typing import NDArray, NDArrays, Parameters

TENSOR_TYPE = "numpy.ndarray"
ANDROID_TENSOR_TYPE = "numpy.nda"
"""Flower's Android clients' tensors: raw little-endian float32 bytes, no header (1-D)."""
ARRAY_TENSOR_TYPES = (TENSOR_TYPE, ANDROID_TENSOR_TYPE)
"""The tensor types that say a Parameters' tensors are numpy arrays."""
_HEADER_LOCK = threading.Lock()
_MAGIC = b"\x93NUMPY"
# The header exactly as numpy writes it (np.save, format 1.0 to 3.0): read without
# ast.literal_eval, which costs a third of a millisecond a tensor. Anything else goes to
# numpy's own parser.
_PLAIN_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[A-Za-z][0-9]*)', 'fortran_order': (True|False), "
    rb"'shape': \(((?:[0-9]+, ?)*[0-9]*)\), \} *\n")

__all__ = [
    "ANDROID_TENSOR_TYPE",
    "ARRAY_TENSOR_TYPES",
    "TENSOR_TYPE",
    "ArrayParameters",
    "Piece",
    "bytes_to_ndarray",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
    "pieces_size",
    "replies_encoded_at_once",
    "reply_parameters",
    "tensor_pieces",
]


Piece = bytes | memoryview
"""A part of a tensor's bytes; a tensor given as pieces is their concatenation."""


def ndarray_to_bytes(ndarray: NDArray) -> bytes:
    """Serialize one array as ``.npy`` bytes (no pickle)."""
    # One copy: the header and the raw array bytes joined into the result.
    return b"".join(_npy_pieces(ndarray))


def _npy_pieces(ndarray: NDArray) -> list[Piece]:
    """An array's ``.npy`` bytes as two pieces, the header and a view of the array's memory
    (a copy only for an array that is not C-contiguous)."""
    array = np.asanyarray(ndarray)
    if array.dtype.hasobject:
        raise SerializationError(
            f"cannot serialize an array of dtype {array.dtype}: object arrays need pickle, "
            "which fedsilo never uses; convert it to a numeric dtype, e.g. arr.astype(np.float32)"
        )
    contiguous = np.asarray(array, order="C")
    return [_npy_header(contiguous.dtype, contiguous.shape),
            contiguous.reshape(-1).view(np.uint8).data]


@functools.lru_cache(maxsize=1024)
def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header of a C-ordered array; a model sends the same few every round."""
    header = {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    head = io.BytesIO()
    if len(repr(header)) < 60000:  # version 1.0 headers hold at most 65535 bytes
        npy_format.write_array_header_1_0(head, header)
    else:
        npy_format.write_array_header_2_0(head, header)
    return head.getvalue()


def bytes_to_ndarray(tensor: bytes) -> NDArray:
    """Decode ``.npy`` bytes into a read-only array that shares memory with ``tensor``."""
    view = memoryview(tensor)
    plain = _plain_header(view)
    shape, fortran_order, dtype, offset = plain if plain is not None else _numpy_header(view)
    if dtype.hasobject:
        raise SerializationError(
            f"refusing a tensor of dtype {dtype}: object arrays are pickled and could run code; "
            "send numeric arrays"
        )
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise SerializationError(f"tensor header has an invalid shape {shape}")
    count = math.prod(shape)  # Python ints: a lying header cannot overflow the check
    expected = count * dtype.itemsize
    if len(view) - offset != expected:
        raise SerializationError(
            f"tensor holds {len(view) - offset} data bytes, but its header says shape {shape} "
            f"of {dtype} ({expected} bytes)"
        )
    array = np.frombuffer(view, dtype=dtype, count=count, offset=offset)
    order = "F" if fortran_order else "C"
    try:
        return array.reshape(shape, order=order)  # type: ignore[call-overload,no-any-return]
    except ValueError as exc:  # e.g. a zero-size shape whose other sides overflow numpy
        raise SerializationError(f"tensor header has an unusable shape {shape}: {exc}") from exc


Header = tuple[tuple[int, ...], bool, np.dtype, int]  # shape, Fortran order, dtype, data offset


def _plain_header(view: memoryview) -> Header | None:
    """The header as numpy writes it, read directly; None for anything else."""
    if len(view) < 10 or view[:6] != _MAGIC or view[6] not in (1, 2, 3) or view[7] != 0:
        return None
    start = 10 if view[6] == 1 else 12
    end = start + int.from_bytes(view[8:start], "little")
    if end > len(view):
        return None
    text = bytes(view[start:end])
    # Only headers of the size numpy writes are kept: the text comes from the peer, and a
    # version 2 header may be as long as the message.
    parse = _parse_plain_header if len(text) <= _KEPT_HEADER_TEXT else _read_plain_header
    parsed = parse(text)
    return None if parsed is None else (*parsed, end)


_KEPT_HEADER_TEXT = 4096  # numpy's own headers take a few hundred bytes


def _read_plain_header(text: bytes) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """Shape, Fortran order and dtype from a header's text; None if it is not plain."""
    match = _PLAIN_HEADER.fullmatch(text)
    if match is None:
        return None
    try:
        dtype = np.dtype(match.group(1).decode("ascii"))
        shape = tuple(int(n) for n in match.group(3).split(b",") if n.strip())
    except (TypeError, ValueError):  # ValueError: a side of more digits than int() reads
        return None
    return shape, match.group(2) == b"True", dtype


# A model's tensors come with the same few headers every round.
_parse_plain_header = functools.lru_cache(maxsize=1024)(_read_plain_header)


def _numpy_header(view: memoryview) -> Header:
    """numpy's own header parser, for headers not in the plain form."""
    # Parse the header from a copy of the header alone: BytesIO over the whole tensor
    # would copy the tensor's data too.
    stream = io.BytesIO(bytes(view[:_header_end(view)]))
    try:
        # numpy reads the header with ast.literal_eval, which CPython 3.11 can fail with a
        # spurious SystemError ("AST constructor recursion depth mismatch") when threads
        # build ASTs at once, as the round loop's decoding threads do. Parse one at a time.
        with _HEADER_LOCK:
            version = npy_format.read_magic(stream)
            if version == (1, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_2_0(stream)
            else:
                raise SerializationError(f"unsupported .npy format version {version}")
    except SerializationError:
        raise
    except Exception as exc:  # numpy raises ValueError/EOFError/SyntaxError on junk
        raise SerializationError(f"tensor is not valid .npy bytes: {exc}") from exc
    return shape, fortran_order, dtype, stream.tell()


def _header_end(view: memoryview) -> int:
    """Where the .npy header ends: magic (6), version (2), a 2- or 4-byte little-endian
    header length (format 1.0 or 2.0/3.0), then the header. Junk yields a short prefix and
    the parser below reports it."""
    if len(view) < 10:
        return len(view)
    width = 2 if view[6] == 1 else 4
    prefix_end = 8 + width
    if len(view) < prefix_end:
        return len(view)
    return min(len(view), prefix_end + int.from_bytes(view[8:prefix_end], "little"))


class ArrayParameters(Parameters):
    """``Parameters`` made from arrays, whose ``.npy`` bytes are made only when ``tensors`` is
    read.

    An encoder that writes a message from ``tensor_pieces`` copies each array's memory once,
    into the message, instead of once into the tensor's bytes and again into the message.
    The arrays are read when the message is encoded (or ``tensors`` first read), so only code
    that encodes its replies at once (see ``replies_encoded_at_once``) makes these. Reading
    ``tensors`` gives the same bytes ``ndarrays_to_parameters`` would, and from then on the
    tensors are what is encoded, changes to that list included; a copy or a pickle is a
    plain ``Parameters``.
    """

    def __init__(self, arrays: NDArrays | None = None, *, tensors: list[bytes] | None = None,
                 tensor_type: str = TENSOR_TYPE) -> None:
        """From ``arrays``; ``tensors`` and ``tensor_type`` are what ``dataclasses.replace``
        passes, which then gives parameters holding those tensors."""
        # Every array is checked (and made C-contiguous) now, where its maker can be told.
        self._array_pieces: list[list[Piece]] = [_npy_pieces(a) for a in arrays or []]
        self._tensors: list[bytes] | None = None
        self.tensor_type = tensor_type
        if tensors is not None:
            self.tensors = tensors

    @property  # type: ignore[override]
    def tensors(self) -> list[bytes]:
        if self._tensors is None:
            self.tensors = [b"".join(pieces) for pieces in self._array_pieces]
        assert self._tensors is not None
        return self._tensors

    @tensors.setter
    def tensors(self, value: list[bytes]) -> None:
        self._tensors = list(value)
        self._array_pieces = []  # let go of the arrays

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parameters):
            return NotImplemented
        return (self.tensors, self.tensor_type) == (other.tensors, other.tensor_type)

    __hash__ = None  # type: ignore[assignment]  # mutable, as Parameters

    def __repr__(self) -> str:
        sizes = [pieces_size(pieces) for pieces in self.pieces()]
        return f"ArrayParameters(tensors of {sizes} bytes, tensor_type={self.tensor_type!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return Parameters, (self.tensors, self.tensor_type)

    def pieces(self) -> list[list[Piece]]:
        """Each tensor as its header and a view of its array, or as its bytes once made."""
        if self._tensors is not None:
            return [[tensor] for tensor in self._tensors]
        return self._array_pieces


def npy_header_and_data(pieces: list[Piece]) -> tuple[bytes, list[Piece]] | None:
    """An ``ArrayParameters`` tensor's pieces as its ``.npy`` header and the pieces of its
    data; None for a tensor given as its bytes (a ``Parameters`` tensor, kept as it is) or
    holding no data."""
    if len(pieces) < 2:
        return None
    header = pieces[0]
    if not isinstance(header, bytes) or not _whole_header(header):
        return None
    data = pieces[1:]
    return (header, data) if pieces_size(data) else None


@functools.lru_cache(maxsize=1024)
def _whole_header(header: bytes) -> bool:
    """Whether ``header`` is one whole ``.npy`` header and nothing more."""
    return header.startswith(_MAGIC) and _header_end(memoryview(header)) == len(header)


_READABLE_HEADER = 10_000  # numpy's default max_header_size for np.load


@functools.lru_cache(maxsize=1024)
def padded_npy_header(header: bytes, pad: int) -> bytes | None:
    """``header`` with ``pad`` more spaces before its closing newline, its length field
    raised to match; None when it cannot grow: ``np.load`` (Flower's reader) and fedsilo's
    own refuse header text of more than ``_READABLE_HEADER`` bytes.

    numpy pads a header so that the data starts 64 bytes into the file; readers, numpy's
    included, take the length field as it is, so the data can be placed anywhere after it.
    Kept per header and padding: a client pads the same few headers every round.
    """
    if pad == 0:
        return header
    width = 2 if header[6] == 1 else 4
    length = int.from_bytes(header[8:8 + width], "little") + pad
    if length > _READABLE_HEADER or not header.endswith(b"\n"):
        return None
    return b"".join((header[:8], length.to_bytes(width, "little"), header[8 + width:-1],
                     b" " * pad, b"\n"))


def pieces_size(pieces: list[Piece]) -> int:
    """The bytes of a tensor given as pieces."""
    return wire.byte_length(pieces)


def tensor_pieces(parameters: Parameters) -> list[list[Piece]]:
    """Each tensor's bytes as pieces to be written one after another: an ``ArrayParameters``
    gives each array's ``.npy`` header and memory without building the tensor."""
    if isinstance(parameters, ArrayParameters):
        return parameters.pieces()
    return [[tensor] for tensor in parameters.tensors]


_ENCODED_AT_ONCE: ContextVar[bool] = ContextVar("fedsilo_replies_encoded_at_once",
                                                default=False)


@contextmanager
def replies_encoded_at_once(enabled: bool = True) -> Iterator[None]:
    """Within this block (in this context: this thread, here), ``reply_parameters`` gives
    ``ArrayParameters``; ``enabled=False`` makes the block change nothing.

    For a transport that encodes a reply as soon as the NumPyClient's adapter returns it, in
    the same thread, with no more of the client's code in between, as a client's stream does
    when that adapter is the client it serves: the arrays are then read once, into the
    message, as they were when ``fit`` returned them. A reply that waits keeps tensors copied
    when it was made, since the client's code may change its arrays afterwards: in-process
    simulation hands the reply to the server as it is, and a ``Client`` that wraps a
    NumPyClient can keep the reply or go on working on the arrays before it returns.
    """
    token = _ENCODED_AT_ONCE.set(enabled)
    try:
        yield
    finally:
        _ENCODED_AT_ONCE.reset(token)


def reply_parameters(arrays: NDArrays) -> Parameters:
    """The parameters of a client's reply: ``ndarrays_to_parameters(arrays)``, or, within
    ``replies_encoded_at_once``, ``ArrayParameters`` that copy the arrays only into the
    encoded message."""
    if _ENCODED_AT_ONCE.get():
        return ArrayParameters(arrays)
    return ndarrays_to_parameters(arrays)


def ndarrays_to_parameters(ndarrays: NDArrays) -> Parameters:
    """Serialize a list of arrays into ``Parameters``."""
    return Parameters(tensors=[ndarray_to_bytes(a) for a in ndarrays], tensor_type=TENSOR_TYPE)


def parameters_to_ndarrays(parameters: Parameters) -> NDArrays:
    """Deserialize ``Parameters`` into arrays; no copy of the tensor data is made.

    Reads ``.npy`` tensors (``tensor_type`` ``numpy.ndarray``, or empty) and the raw
    float32 tensors of Flower's Android clients (``numpy.nda``, read as 1-D float32).
    """
    if parameters.tensor_type == ANDROID_TENSOR_TYPE:
        return [_raw_float32(t) for t in parameters.tensors]
    if parameters.tensor_type not in (TENSOR_TYPE, ""):
        raise SerializationError(
            f"unknown tensor_type {parameters.tensor_type!r}; fedsilo reads {TENSOR_TYPE!r}"
        )
    return [bytes_to_ndarray(t) for t in parameters.tensors]


def _raw_float32(tensor: bytes) -> NDArray:
    if len(tensor) % 4:
        raise SerializationError(
            f"a {ANDROID_TENSOR_TYPE!r} tensor of {len(tensor)} bytes is not whole float32s")
    return np.frombuffer(tensor, dtype="<f4")
