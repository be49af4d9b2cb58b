"""Simulated federations: virtual clients on a local process pool or on Ray.

``start_simulation`` and ``run_simulation`` are called like Flower's. Clients that live in
the server's process (for tests) use ``InProcessClientProxy``.
"""

from __future__ import annotations

from fedsilo.simulation.app import start_simulation
from fedsilo.simulation.client_manager import VirtualClientManager
from fedsilo.simulation.inprocess import InProcessClientProxy
from fedsilo.simulation.run_app import run_simulation
from fedsilo.simulation.state import ClientStateStore, StatefulClient

__all__ = [
    "ClientStateStore",
    "InProcessClientProxy",
    "StatefulClient",
    "VirtualClientManager",
    "run_simulation",
    "start_simulation",
]
