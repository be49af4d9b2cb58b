"""Creating and starting the gRPC server that clients join.

The server is a ``grpc.aio`` server on fedsilo's event loop, which runs in a
daemon thread: every client's stream is served there, without a thread per
stream, while the round loop keeps its blocking, thread-based API. All servers
of a process share that one loop: gRPC dispatches every asyncio completion in
the process through the loop that first used ``grpc.aio``, so a loop per
server would leave the others stranded once the first one stopped.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import grpc
import grpc.aio

from fedsilo.common import GRPC_MAX_MESSAGE_LENGTH
from fedsilo.common.memory import limit_malloc_arenas
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.grpc.auth import ClientAllowlist
from fedsilo.server.grpc.servicer import FederationServicer, add_servicer

__all__ = ["FederationGrpcServer", "start_grpc_server"]

DEFAULT_KEEPALIVE_TIME = 60.0  # seconds between the server's pings on a quiet connection
DEFAULT_KEEPALIVE_TIMEOUT = 20.0  # seconds without a ping's answer before a client is gone
MIN_CLIENT_PING_INTERVAL = 1.0  # clients may ping this often while no message flows


def start_grpc_server(
    *,
    client_manager: ClientManager,
    server_address: str,
    max_concurrent_workers: int = 1000,
    max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    certificates: tuple[bytes, bytes, bytes] | None = None,
    require_client_certificate: bool = False,
    client_allowlist: ClientAllowlist | None = None,
    keepalive_time: float = DEFAULT_KEEPALIVE_TIME,
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
) -> tuple[FederationGrpcServer, int]:
    """Start serving ``Join`` streams; return the server and the port it is bound to.

    ``certificates`` is ``(ca_certificate, server_certificate, server_private_key)``
    as PEM bytes; without it the server speaks plain text. With
    ``require_client_certificate`` (mutual TLS) a client must present a
    certificate the CA signed; with ``client_allowlist`` its public key must
    also be enrolled, else it is refused before it is registered. Port 0 picks
    a free port. At most ``max_concurrent_workers`` streams are served at once;
    a client beyond that is refused with RESOURCE_EXHAUSTED.

    Keepalive: the server pings a quiet connection every ``keepalive_time``
    seconds and drops a client that does not answer within
    ``keepalive_timeout``; it accepts clients' own pings as often as every
    ``MIN_CLIENT_PING_INTERVAL`` and never closes a connection for pinging, so
    a client that trains for hours keeps its stream.
    """
    if client_allowlist is not None:
        require_client_certificate = True
    if require_client_certificate and certificates is None:
        raise ValueError("client certificates are checked over TLS: pass certificates=(ca, "
                         "server certificate, server key) as well")
    limit_malloc_arenas()  # before gRPC starts its threads; see fedsilo.common.memory
    options = [
        ("grpc.max_send_message_length", max_message_length),
        ("grpc.max_receive_message_length", max_message_length),
        ("grpc.keepalive_time_ms", int(keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms",
         int(min(MIN_CLIENT_PING_INTERVAL, keepalive_time) * 1000)),
        ("grpc.http2.max_ping_strikes", 0),  # 0: never close a connection for its pings
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if os.environ.get("FEDSILO_GRPC_BDP_PROBE", "0") != "1":
        # gRPC widens each stream's receive window to the link's bandwidth-delay product;
        # on loopback and in a LAN that lets every client push megabytes the server has not
        # asked for yet. Without the probe a stream's window is what a pending read needs,
        # so a client whose large reply waits for a slot (see the servicer) holds the rest
        # itself: the server's peak RSS at 10 clients x 10M float32 went from 0.9 GB to
        # 0.5 GB, at the same round time.
        options.append(("grpc.http2.bdp_probe", 0))
    servicer = FederationServicer(client_manager, max_message_length=max_message_length,
                                  allowlist=client_allowlist)
    credentials = None
    if certificates is not None:
        ca_cert, cert, key = _check_certificates(certificates)
        roots = client_allowlist.trust_roots(ca_cert) if client_allowlist else ca_cert
        credentials = grpc.ssl_server_credentials(
            ((key, cert),), root_certificates=roots,
            require_client_auth=require_client_certificate)

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(options=options,
                                 maximum_concurrent_rpcs=max_concurrent_workers)
        add_servicer(server, servicer)
        try:
            if credentials is None:
                port = server.add_insecure_port(server_address)
            else:
                port = server.add_secure_port(server_address, credentials)
        except RuntimeError as exc:  # grpc's "Failed to bind": a port in use or not ours
            port = 0
            cause: BaseException | None = exc
        else:
            cause = None
        if port == 0:
            raise OSError(f"cannot listen on {server_address}: the address is in use or not "
                          "available on this machine; choose another port") from cause
        await server.start()
        return server, port

    return FederationGrpcServer.launch(start, servicer)


_LOOP_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None


def server_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for gRPC servers, started on first use and kept."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="fedsilo-grpc-loop",
                             daemon=True).start()
            _LOOP = loop
        return _LOOP


class FederationGrpcServer:
    """A running ``grpc.aio`` server on the shared server loop.

    ``stop(grace)`` behaves like ``grpc.Server.stop``: streams get ``grace``
    seconds to finish (None: none), and the returned event is set once the
    server and its streams are gone.
    """

    def __init__(self, server: grpc.aio.Server, servicer: FederationServicer) -> None:
        self._server = server
        self._servicer = servicer
        self._stopped: threading.Event | None = None
        self._lock = threading.Lock()

    @classmethod
    def launch(cls, start: Any, servicer: FederationServicer) -> tuple[FederationGrpcServer, int]:
        """Run ``start()`` (a coroutine function returning ``(server, port)``) on the
        server loop."""
        server, port = asyncio.run_coroutine_threadsafe(start(), server_loop()).result()
        return cls(server, servicer), port

    def stop(self, grace: float | None) -> threading.Event:
        with self._lock:
            if self._stopped is not None:
                return self._stopped
            self._stopped = stopped = threading.Event()

        async def shut_down() -> None:
            await self._server.stop(grace)
            await self._servicer.end_streams()

        asyncio.run_coroutine_threadsafe(shut_down(), server_loop()).add_done_callback(
            lambda _: stopped.set())
        return stopped

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until ``stop`` has finished; False on timeout."""
        with self._lock:
            stopped = self._stopped
        return stopped is not None and stopped.wait(timeout)


def _check_certificates(
    certificates: tuple[bytes, bytes, bytes],
) -> tuple[bytes, bytes, bytes]:
    if len(certificates) != 3 or not all(isinstance(c, bytes) for c in certificates):
        raise ValueError(
            "certificates must be a tuple (ca_certificate, server_certificate, "
            "server_private_key) of PEM bytes, e.g. Path('ca.crt').read_bytes()"
        )
    return certificates
