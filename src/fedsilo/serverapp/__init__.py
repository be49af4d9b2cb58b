"""``ServerApp`` and ``Grid``: Flower's ``flwr.serverapp``, for code that changes only its
imports. Strategies with ``start()`` are in :mod:`fedsilo.serverapp.strategy`."""

from __future__ import annotations

from fedsilo.serverapp import strategy
from fedsilo.serverapp._grid import Grid, ProxyGrid, wait_for_nodes
from fedsilo.serverapp._network import serve_server_app
from fedsilo.serverapp._server_app import ServerApp, ServerAppComponents, run_server_app

__all__ = ["Grid", "ProxyGrid", "ServerApp", "ServerAppComponents", "run_server_app",
           "serve_server_app", "strategy", "wait_for_nodes"]
