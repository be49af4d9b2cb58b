"""Client wrappers that change what a client sends, e.g. clipping for differential privacy."""

from __future__ import annotations

from fedsilo.client.mod.clipping import AdaptiveClippingClient, FixedClippingClient

__all__ = ["AdaptiveClippingClient", "FixedClippingClient"]
