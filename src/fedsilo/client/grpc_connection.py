"""The client's side of the bidirectional gRPC stream."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from fedsilo.common import chunking, serde
from fedsilo.common.memory import reuse_buffers_up_to

_SERVICE_METHOD = "/flwr.proto.FlowerService/Join"
_CLOSE = object()

DEFAULT_KEEPALIVE_TIME = 60.0  # seconds between pings while the stream is quiet
DEFAULT_KEEPALIVE_TIMEOUT = 20.0  # seconds to wait for a ping's answer before giving up


class StreamConnection:
    """One open ``Join`` stream: receive instructions, send replies.

    The call announces that this client reads chunk frames (metadata a Flower
    server ignores); replies go to the server in chunks only when the server
    announced the same in its initial metadata.
    """

    def __init__(self, channel: grpc.Channel, max_message_length: int) -> None:
        self._outgoing: queue.Queue[object] = queue.Queue()
        self.max_message_length = max_message_length
        join = channel.stream_stream(
            _SERVICE_METHOD,
            request_serializer=None,  # raw bytes: replies may go as chunk frames
            response_deserializer=None,  # raw bytes; decoded where errors can be reported
        )
        self._responses = join(iter(self._outgoing.get, _CLOSE),
                               metadata=chunking.announce(max_message_length))
        self._done = threading.Event()
        self._responses.add_done_callback(lambda _: self._done.set())
        # private: the model's buffer is this client's own, reused from round to round
        self._assembler = chunking.ChunkAssembler(serde.server_message_from_bytes, private=True)
        self._peer_limit: int | None = None
        self._peer_known = False

    def receive(self) -> serde.ServerInstruction | None:
        """The next instruction, or None when the server closed the stream.

        Raises ``ProtocolError`` for bytes that are no instruction.
        """
        while True:
            try:
                data: bytes = next(self._responses)
            except StopIteration:
                return None
            if not chunking.is_frame(data):
                reuse_buffers_up_to(len(data))  # see fedsilo.common.memory
                return serde.server_message_from_bytes(data)
            message = self._assembler.feed(data)
            if message is not None:
                return message  # type: ignore[return-value]
            # the first frame announces the whole model: its buffers come next
            reuse_buffers_up_to(self._assembler.announced)

    @property
    def peer_limit(self) -> int | None:
        """The chunk frame size the server reads; None for a server that takes no chunks."""
        if not self._peer_known:
            self._peer_limit = chunking.parse_announcement(self._responses.initial_metadata())
            self._peer_known = True
        return self._peer_limit

    def send(self, reply: serde.ClientReply) -> None:
        """Send ``reply``, in chunks where needed; ``TooLarge`` if the server takes none."""
        frames = chunking.encode_frames(
            reply, max_length=self.max_message_length, peer_limit=self.peer_limit,
            what="grpc_max_message_length (start_client's and start_server's)",
            paced_above=chunking.PACED_ABOVE)
        reuse_buffers_up_to(sum(len(frame) for frame in frames))
        for frame in frames:
            self._outgoing.put(frame)

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
    client_certificate: tuple[bytes, bytes] | None = None,
    keepalive_time: float = DEFAULT_KEEPALIVE_TIME,
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
) -> Iterator[grpc.Channel]:
    """Open a channel to the server, plain or TLS, with fedsilo's channel options.

    Keepalive pings every ``keepalive_time`` seconds, also while no message
    flows (a client training for an hour sends nothing), keep NATs and proxies
    from dropping the quiet connection and reveal a dead server within
    ``keepalive_timeout``. ``client_certificate`` is (certificate chain, private
    key) as PEM, for servers that require mutual TLS.
    """
    options = [
        ("grpc.max_send_message_length", max_message_length),
        ("grpc.max_receive_message_length", max_message_length),
        ("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if insecure:
        if client_certificate is not None:
            raise ValueError("a client certificate needs TLS; drop insecure=True")
        channel = grpc.insecure_channel(server_address, options=options)
    else:
        chain, key = client_certificate if client_certificate is not None else (None, None)
        credentials = grpc.ssl_channel_credentials(root_certificates, private_key=key,
                                                   certificate_chain=chain)
        channel = grpc.secure_channel(server_address, credentials, options=options)
    try:
        yield channel
    finally:
        channel.close()
