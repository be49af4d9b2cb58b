"""What the fuzz tests (and bench/fuzz.py) feed bytes to, and what each may raise.

Every target takes bytes and either returns or raises one of fedsilo's documented
errors; anything else is a bug the fuzzers report.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedsilo.common import (
    ClientFailure,
    Code,
    FitRes,
    ProtocolError,
    SerializationError,
    Status,
    chunking,
    ndarrays_to_parameters,
    serde,
)
from fedsilo.common.parameter import bytes_to_ndarray, ndarray_to_bytes, parameters_to_ndarrays
from fedsilo.common.typing import EvaluateIns, FitIns, GetPropertiesRes
from fedsilo.server.validation import check_fit_res

EXPECTED_ERRORS = (ProtocolError, SerializationError, ClientFailure)

REFERENCE: list[np.ndarray] = [np.arange(12, dtype=np.float64).reshape(4, 3),
                               np.ones(3, dtype=np.float32)]


def decode_client_message(data: bytes) -> None:
    serde.client_message_from_bytes(data)


def decode_server_message(data: bytes) -> None:
    serde.server_message_from_bytes(data)


def decode_tensor(data: bytes) -> None:
    array = bytes_to_ndarray(data)
    np.asarray(array).sum()  # touch the data: the header must not lie about its size


def decode_and_check_fit_res(data: bytes) -> None:
    """The server's whole path for a reply: decode, then validate against the model."""
    reply = serde.client_message_from_bytes(data)
    if isinstance(reply, FitRes):
        check_fit_res("fuzz", reply, REFERENCE)
        parameters_to_ndarrays(reply.parameters)


def assemble_frames(data: bytes) -> None:
    """Feed the bytes as a sequence of frames (split at fixed points) to an assembler."""
    assembler = chunking.ChunkAssembler(serde.client_message_from_bytes, max_transfer=2**24)
    step = max(1, len(data) // 3)
    for start in range(0, len(data), step):
        piece = data[start:start + step]
        if chunking.is_frame(piece):
            assembler.feed(piece)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "client_message": decode_client_message,
    "server_message": decode_server_message,
    "tensor": decode_tensor,
    "fit_res": decode_and_check_fit_res,
    "chunk_frames": assemble_frames,
}


def seeds() -> dict[str, list[bytes]]:
    """Valid inputs for each target, to mutate."""
    fit_res = serde.client_message_to_bytes(
        FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters(REFERENCE), 7, {"loss": 0.5}))
    props = serde.client_message_to_bytes(
        GetPropertiesRes(Status(Code.OK, ""), {"a": 1, "b": "x", "c": b"\x00", "d": 1.5}))
    big = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([np.arange(600.0)]), 3, {})
    frames = chunking.encode_frames(big, max_length=2200, peer_limit=2200, what="fuzz")
    server = [serde.server_message_to_bytes(FitIns(ndarrays_to_parameters(REFERENCE), {"r": 1})),
              serde.server_message_to_bytes(EvaluateIns(ndarrays_to_parameters([]), {}))]
    return {
        "client_message": [fit_res, props],
        "server_message": server,
        "tensor": [ndarray_to_bytes(a) for a in REFERENCE] + [ndarray_to_bytes(np.zeros(()))],
        "fit_res": [fit_res],
        "chunk_frames": [b"".join(frames[:2]), frames[0]],
    }
