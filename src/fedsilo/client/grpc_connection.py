"""The client's side of the bidirectional gRPC stream."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from fedsilo.common import serde

_SERVICE_METHOD = "/flwr.proto.FlowerService/Join"
_CLOSE = object()


class StreamConnection:
    """One open ``Join`` stream: receive instructions, send replies."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._outgoing: queue.Queue[object] = queue.Queue()
        join = channel.stream_stream(
            _SERVICE_METHOD,
            request_serializer=serde.client_message_to_bytes,
            response_deserializer=None,  # raw bytes; decoded where errors can be reported
        )
        self._responses = join(iter(self._outgoing.get, _CLOSE))
        self._done = threading.Event()
        self._responses.add_done_callback(lambda _: self._done.set())

    def receive(self) -> bytes | None:
        """The next instruction's bytes, or None when the server closed the stream."""
        try:
            return next(self._responses)  # type: ignore[no-any-return]
        except StopIteration:
            return None

    def send(self, reply: serde.ClientReply) -> None:
        self._outgoing.put(reply)

    def finish(self, grace: float = 5.0) -> None:
        """Half-close the stream and give the server ``grace`` seconds to end it."""
        self._outgoing.put(_CLOSE)
        self._done.wait(grace)

    def close(self) -> None:
        self._outgoing.put(_CLOSE)
        self._responses.cancel()


@contextmanager
def grpc_channel(
    server_address: str,
    *,
    insecure: bool,
    root_certificates: bytes | None,
    max_message_length: int,
) -> Iterator[grpc.Channel]:
    """Open a channel to the server, plain or TLS, with fedsilo's channel options."""
    options = [
        ("grpc.max_send_message_length", max_message_length),
        ("grpc.max_receive_message_length", max_message_length),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if insecure:
        channel = grpc.insecure_channel(server_address, options=options)
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates)
        channel = grpc.secure_channel(server_address, credentials, options=options)
    try:
        yield channel
    finally:
        channel.close()
