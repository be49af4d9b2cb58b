"""``start_server``: run a federation over gRPC and return its History."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fedsilo.common import GRPC_MAX_MESSAGE_LENGTH
from fedsilo.server.client_manager import ClientManager, SimpleClientManager
from fedsilo.server.grpc.auth import ClientAllowlist
from fedsilo.server.grpc.client_proxy import DEFAULT_FIT_REPLY_FACTOR
from fedsilo.server.grpc.server import (
    DEFAULT_KEEPALIVE_TIME,
    DEFAULT_KEEPALIVE_TIMEOUT,
    start_grpc_server,
)
from fedsilo.server.history import History
from fedsilo.server.server import Server
from fedsilo.server.server_config import ServerConfig
from fedsilo.server.strategy import FedAvg, Strategy

log = logging.getLogger("fedsilo.server")

__all__ = ["start_server"]

DEFAULT_SERVER_ADDRESS = "[::]:8080"


def start_server(
    *,
    server_address: str = DEFAULT_SERVER_ADDRESS,
    server: Server | None = None,
    config: ServerConfig | None = None,
    strategy: Strategy | None = None,
    client_manager: ClientManager | None = None,
    grpc_max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    certificates: tuple[bytes, bytes, bytes] | None = None,
    require_client_certificate: bool = False,
    client_allowlist: ClientAllowlist | None = None,
    keepalive_time: float = DEFAULT_KEEPALIVE_TIME,
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
    shutdown_grace: float = 5.0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    fit_reply_factor: float = DEFAULT_FIT_REPLY_FACTOR,
) -> History:
    """Serve clients at ``server_address``, run ``config.num_rounds`` rounds, return the History.

    Pass either a ready ``server`` or the pieces to build one (``strategy``,
    ``client_manager``); ``certificates`` turns on TLS, ``require_client_certificate``
    mutual TLS, ``client_allowlist`` admits enrolled clients only, ``keepalive_*``
    tune the pings that keep quiet streams open (see ``start_grpc_server``). At the end, clients
    still busy get ``shutdown_grace`` seconds to answer and be told to disconnect.
    A fit reply that a fedsilo client sends in chunks may announce at most
    ``fit_reply_factor`` times the bytes of the parameters it was sent; a larger or
    unasked one is refused at its first frame.

    ``checkpoint_dir`` makes the run resumable: the state after every round is
    written there, and when it already holds a checkpoint (a crashed or finished
    run), the federation continues after that round up to ``config.num_rounds``.
    That checkpoint is read and checked before the server listens: one that is damaged,
    of another strategy or of another model's shapes raises ``CheckpointError``.
    """
    server, config = _init_defaults(server, config, strategy, client_manager)
    if checkpoint_dir is not None:
        server.checkpoint_dir = Path(checkpoint_dir)
    server.load_checkpoint()  # a checkpoint that cannot be resumed stops us before we listen
    grpc_server, port = start_grpc_server(
        client_manager=server.client_manager(),
        server_address=server_address,
        max_message_length=grpc_max_message_length,
        certificates=certificates,
        require_client_certificate=require_client_certificate,
        client_allowlist=client_allowlist,
        keepalive_time=keepalive_time,
        keepalive_timeout=keepalive_timeout,
        fit_reply_factor=fit_reply_factor,
    )
    log.info("federation server listening on port %d (%s), %d rounds", port,
             "TLS" if certificates else "plain text", config.num_rounds)
    try:
        history, elapsed = server.fit(num_rounds=config.num_rounds, timeout=config.round_timeout)
        log.info("federation finished in %.2f s", elapsed)
        server.disconnect_all_clients(timeout=config.round_timeout)
    finally:
        grpc_server.stop(grace=shutdown_grace).wait(shutdown_grace + 1)
    return history


def _init_defaults(
    server: Server | None,
    config: ServerConfig | None,
    strategy: Strategy | None,
    client_manager: ClientManager | None,
) -> tuple[Server, ServerConfig]:
    if server is None:
        server = Server(
            client_manager=client_manager if client_manager is not None else SimpleClientManager(),
            strategy=strategy if strategy is not None else FedAvg(),
        )
    elif strategy is not None or client_manager is not None:
        log.warning("start_server got a server; its own strategy and client manager are used")
    return server, config if config is not None else ServerConfig()
