"""A dropped stream's reason says what the server saw, not every cause it could have had.

A raw peer is sampled for a fit and then, instead of answering, either cancels its call
(what a killed client's connection looks like to gRPC) or closes its side of the stream.
The round's failure for it must name that, and speak of the message limit only for a
client that sends no chunks, the only kind whose reply gRPC could have refused for size.
"""

from __future__ import annotations

from typing import Any

import pytest

import fedsilo as fl
from fedsilo.common import chunking
from fedsilo.common.exceptions import ClientDisconnected
from tests.conftest import free_port
from tests.reliability.peers import (
    FirstRoundWaitsForAll,
    Honest,
    RawPeer,
    ServerThread,
    serve_raw,
    start_client_thread,
)

pytestmark = pytest.mark.timeout(60)

CUT_OFF = "gRPC ended the call (the client cancelled it or its connection dropped)"


def failure_of_a_peer_that(ends: str, announces_chunks: bool) -> str:
    address = f"127.0.0.1:{free_port()}"
    strategy = FirstRoundWaitsForAll(2, 1)
    server = ServerThread(server_address=address, strategy=strategy,
                          config=fl.server.ServerConfig(num_rounds=1, round_timeout=20))
    metadata = chunking.announce(2**20) if announces_chunks else ()
    peer = RawPeer(address, metadata=metadata)

    def end_instead_of_answering(ins: Any) -> list[bytes]:
        if ends == "cancels":
            peer.responses.cancel()
        else:
            peer.send_end()
        return []

    serve_raw(peer, end_instead_of_answering)
    start_client_thread(address, Honest(1.0, 10), [], max_wait_time=20)
    server.join(40)
    peer.close()
    (failure,) = strategy.failures[1]
    assert isinstance(failure, ClientDisconnected), repr(failure)
    return failure.reason


@pytest.mark.parametrize("announces_chunks", [True, False])
def test_a_cancelled_stream_is_reported_as_cut_off(announces_chunks: bool) -> None:
    reason = failure_of_a_peer_that("cancels", announces_chunks)
    assert reason.startswith(f"the client's stream ended: {CUT_OFF} before it answered")
    assert ("message limit" in reason) is not announces_chunks, reason


def test_a_stream_the_client_closed_is_reported_as_closed() -> None:
    reason = failure_of_a_peer_that("closes", announces_chunks=True)
    assert reason == ("the client's stream ended: the client closed its side of the stream "
                      "before it answered")
