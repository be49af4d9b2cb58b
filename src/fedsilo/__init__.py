"""fedsilo: federated learning across data silos, wire- and API-compatible with Flower 1.x.

``import fedsilo as fl`` gives the names Flower users know: ``fl.client``,
``fl.server``, ``fl.common``, ``fl.simulation``.
"""

from __future__ import annotations

from fedsilo import client, common, server, simulation

__version__ = "0.1.0"

__all__ = ["__version__", "client", "common", "server", "simulation"]
