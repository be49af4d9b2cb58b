"""Clients that live in the server's process or are simulated, behind the same round loop."""

from __future__ import annotations

from fedsilo.simulation.inprocess import InProcessClientProxy

__all__ = ["InProcessClientProxy"]
