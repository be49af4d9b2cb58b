"""Strategies: how the server configures rounds and aggregates results."""

from __future__ import annotations

from fedsilo.server.strategy.fedavg import FedAvg
from fedsilo.server.strategy.strategy import Strategy

__all__ = ["FedAvg", "Strategy"]
