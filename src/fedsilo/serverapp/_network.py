"""A ServerApp on fedsilo's gRPC server: nodes join over the network, as ``start_server``'s
clients do (TLS, keepalives, chunked large messages and all), and the app's Grid reaches
them through the same client proxies."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fedsilo.app import Context
from fedsilo.server.client_manager import SimpleClientManager
from fedsilo.server.grpc.server import start_grpc_server
from fedsilo.server.server import Server
from fedsilo.serverapp._server_app import ServerApp, run_server_app

log = logging.getLogger("fedsilo.server")

__all__ = ["serve_server_app"]


def serve_server_app(
    app: ServerApp,
    context: Context,
    *,
    server_address: str,
    certificates: tuple[bytes, bytes, bytes] | None = None,
    on_listening: Callable[[int], None] | None = None,
    shutdown_grace: float = 5.0,
) -> None:
    """Serve nodes at ``server_address`` and run ``app`` with them; when it returns, tell
    every node the federation is over and stop serving.

    Parameters
    ----------
    app:
        The ServerApp.
    context:
        Its Context (run config included).
    server_address:
        ``host:port`` (port 0: any free port, passed to ``on_listening``).
    certificates:
        ``(ca, server certificate, server key)`` PEM bytes: TLS; None: plain text.
    on_listening:
        Called with the bound port once nodes can join.
    shutdown_grace:
        Seconds busy nodes get to answer at the end.
    """
    manager = SimpleClientManager()
    grpc_server, port = start_grpc_server(client_manager=manager, server_address=server_address,
                                          certificates=certificates)
    log.info("ServerApp listening on port %d (%s)", port,
             "TLS" if certificates else "plain text")
    if on_listening is not None:
        on_listening(port)
    try:
        run_server_app(app, manager, context)
        Server(client_manager=manager).disconnect_all_clients(timeout=shutdown_grace)
    finally:
        grpc_server.stop(grace=shutdown_grace).wait(shutdown_grace + 1)
