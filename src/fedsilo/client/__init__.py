"""Federated clients: the interfaces and the functions that connect them to a server."""

from __future__ import annotations

from fedsilo.client.app import start_client, start_numpy_client
from fedsilo.client.client import Client
from fedsilo.client.numpy_client import NumPyClient

__all__ = ["Client", "NumPyClient", "start_client", "start_numpy_client"]
