"""``ClientApp``: Flower's ``flwr.clientapp``, for code that changes only its imports."""

from __future__ import annotations

from fedsilo.clientapp import mod
from fedsilo.clientapp._client_app import ClientApp, ClientAppCallable, Mod
from fedsilo.clientapp._node import ClientAppClient, node_context

__all__ = ["ClientApp", "ClientAppCallable", "ClientAppClient", "Mod", "mod", "node_context"]
