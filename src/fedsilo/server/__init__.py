"""The federation server: the round loop, client registry, strategies and gRPC transport."""

from __future__ import annotations

from fedsilo.server import strategy
from fedsilo.server.app import start_server
from fedsilo.server.client_manager import ClientManager, Criterion, SimpleClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.history import History
from fedsilo.server.server import Server
from fedsilo.server.server_config import ServerConfig

__all__ = [
    "ClientManager",
    "ClientProxy",
    "Criterion",
    "History",
    "Server",
    "ServerConfig",
    "SimpleClientManager",
    "start_server",
    "strategy",
]
