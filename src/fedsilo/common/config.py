"""Run-config helpers Flower apps import (``flwr.common.config``): nested tables as dotted
keys and back."""

from __future__ import annotations

from typing import Any

__all__ = ["flatten_dict", "unflatten_dict"]


def flatten_dict(raw: dict[str, Any], parent_key: str = "") -> dict[str, Any]:
    """``{"params": {"eta": 0.1}}`` as ``{"params.eta": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{parent_key}.{key}" if parent_key else key
        if isinstance(value, dict):
            flat.update(flatten_dict(value, name))
        else:
            flat[name] = value
    return flat


def unflatten_dict(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"params.eta": 0.1}`` as ``{"params": {"eta": 0.1}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        level = nested
        for part in parents:
            level = level.setdefault(part, {})
            if not isinstance(level, dict):
                raise ValueError(f"{key!r} nests under a key that holds a value")
        level[leaf] = value
    return nested
