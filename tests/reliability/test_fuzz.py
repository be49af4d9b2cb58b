"""Fuzzing the decoders and the servicer with hypothesis, on a bounded budget.

Random bytes and mutated valid messages must end in a return or one of fedsilo's
documented errors; over a real channel, the server must keep serving and no thread
may die of an unhandled exception. bench/fuzz.py runs the same targets for longer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsilo.common import (
    ClientFailure,
    FitIns,
    SerializationError,
    bytes_to_ndarray,
    ndarrays_to_parameters,
    serde,
)
from fedsilo.server.grpc.server import start_grpc_server
from tests.interop.harness import wait_until
from tests.reliability.fuzz_targets import EXPECTED_ERRORS, REFERENCE, TARGETS, seeds
from tests.reliability.peers import RawPeer, RecordingClientManager

SEEDS = seeds()
BUDGET = settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    """A valid input with bytes flipped, cut, inserted or repeated."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[position:position + draw(st.integers(1, 64))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[position:position] = data[position:position + draw(st.integers(1, 32))]
    return bytes(data)


def fuzz_inputs(target: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=512), mutated(SEEDS[target]))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_decoders_return_or_raise_a_documented_error(target: str) -> None:
    function = TARGETS[target]

    @BUDGET
    @given(fuzz_inputs(target))
    def check(data: bytes) -> None:
        try:
            function(data)
        except EXPECTED_ERRORS:
            pass

    check()


def npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    from numpy.lib import format as npy_format

    head = io.BytesIO()
    npy_format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False,
                                             "shape": shape})
    return head.getvalue()


@pytest.mark.parametrize("shape", [(2**32, 2**32), (2**62, 4), (-1,), (0, 2**63 - 1)])
def test_a_tensor_header_with_an_overflowing_shape_is_a_serialization_error(
    shape: tuple[int, ...],
) -> None:
    """Such headers used to escape as numpy's bare ValueError, not a SerializationError."""
    with pytest.raises(SerializationError, match="shape"):
        bytes_to_ndarray(npy_header(shape))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, RecordingClientManager, list[BaseException]]]:
    """A real gRPC server; unhandled exceptions of any thread are collected."""
    crashes: list[BaseException] = []
    previous = threading.excepthook

    def record(args: Any) -> None:
        crashes.append(args.exc_value)
        previous(args)

    threading.excepthook = record
    manager = RecordingClientManager()
    server, port = start_grpc_server(client_manager=manager, server_address="127.0.0.1:0",
                                     max_message_length=1 << 20)
    yield f"127.0.0.1:{port}", manager, crashes
    server.stop(None)
    threading.excepthook = previous


def exchange(address: str, manager: RecordingClientManager, replies: list[bytes]) -> object:
    """A raw peer joins, is sent a FitIns and answers with ``replies``; the proxy's outcome."""
    before = len(manager.registered)
    peer = RawPeer(address)
    try:
        wait_until(lambda: len(manager.registered) > before, 10, "the raw peer registered")
        proxy = manager.all()[manager.registered[before]]
        def answer() -> None:
            peer.receive()
            for reply in replies:
                peer.send(reply)

        threading.Thread(target=answer, daemon=True).start()
        try:
            return proxy.fit(FitIns(ndarrays_to_parameters(REFERENCE), {}), timeout=2.0)
        except ClientFailure as exc:
            return exc
    finally:
        peer.close()


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(replies=st.lists(st.one_of(st.binary(max_size=256), mutated(SEEDS["client_message"]),
                                  mutated(SEEDS["chunk_frames"])), min_size=1, max_size=3))
def test_the_servicer_survives_random_and_mutated_replies(
    served: tuple[str, RecordingClientManager, list[BaseException]], replies: list[bytes]
) -> None:
    address, manager, crashes = served
    outcome = exchange(address, manager, replies)
    assert isinstance(outcome, ClientFailure | serde.t.FitRes), outcome
    assert not crashes, crashes
    # Still serving: a well-formed answer from the next peer goes through.
    good = serde.client_message_to_bytes(serde.t.FitRes(
        serde.t.Status(serde.t.Code.OK, ""), ndarrays_to_parameters(REFERENCE), 1, {}))
    assert isinstance(exchange(address, manager, [good]), serde.t.FitRes)


def test_a_raw_peer_that_sends_before_anything_is_asked_is_cut_off(
    served: tuple[str, RecordingClientManager, list[BaseException]],
) -> None:
    address, manager, crashes = served
    peer = RawPeer(address)
    peer.send(b"\x00garbage")
    with pytest.raises(grpc.RpcError) as caught:
        peer.receive()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    peer.close()
    assert not crashes
