"""Clients that live in the test's process, with stable ids, for round-loop tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import fedsilo as fl
from fedsilo.server import SimpleClientManager
from fedsilo.simulation.inprocess import InProcessClientProxy


class AddOne(fl.client.NumPyClient):
    """Adds 1 to every parameter on one example, so the model counts the rounds it went through."""

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return [np.zeros(1)]

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return [p + 1.0 for p in parameters], 1, {}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple:
        return 0.0, 1, {}


def sites(clients: Sequence[fl.client.NumPyClient],
          **manager_options: Any) -> tuple[SimpleClientManager, list[InProcessClientProxy]]:
    """A client manager with ``clients`` registered as ``site-0``, ``site-1``, ..."""
    manager = SimpleClientManager(**manager_options)
    proxies = [InProcessClientProxy(f"site-{i}", client.to_client())
               for i, client in enumerate(clients)]
    for proxy in proxies:
        manager.register(proxy)
    return manager, proxies
