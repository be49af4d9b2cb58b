"""Creating and starting the gRPC server that clients join."""

from __future__ import annotations

import concurrent.futures

import grpc

from fedsilo.common import GRPC_MAX_MESSAGE_LENGTH
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.grpc.servicer import FederationServicer, add_servicer

__all__ = ["start_grpc_server"]


def start_grpc_server(
    *,
    client_manager: ClientManager,
    server_address: str,
    max_concurrent_workers: int = 1000,
    max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    certificates: tuple[bytes, bytes, bytes] | None = None,
) -> tuple[grpc.Server, int]:
    """Start serving ``Join`` streams; return the server and the port it is bound to.

    ``certificates`` is ``(ca_certificate, server_certificate, server_private_key)``
    as PEM bytes; without it the server speaks plain text. Port 0 picks a free port.
    """
    options = [
        ("grpc.max_send_message_length", max_message_length),
        ("grpc.max_receive_message_length", max_message_length),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=max_concurrent_workers),
        maximum_concurrent_rpcs=max_concurrent_workers,
        options=options,
    )
    add_servicer(server, FederationServicer(client_manager))
    if certificates is None:
        port = server.add_insecure_port(server_address)
    else:
        ca_cert, cert, key = _check_certificates(certificates)
        credentials = grpc.ssl_server_credentials(((key, cert),), root_certificates=ca_cert,
                                                  require_client_auth=False)
        port = server.add_secure_port(server_address, credentials)
    if port == 0:
        raise OSError(f"could not bind the federation server to {server_address}")
    server.start()
    return server, port


def _check_certificates(
    certificates: tuple[bytes, bytes, bytes],
) -> tuple[bytes, bytes, bytes]:
    if len(certificates) != 3 or not all(isinstance(c, bytes) for c in certificates):
        raise ValueError(
            "certificates must be a tuple (ca_certificate, server_certificate, "
            "server_private_key) of PEM bytes, e.g. Path('ca.crt').read_bytes()"
        )
    return certificates
