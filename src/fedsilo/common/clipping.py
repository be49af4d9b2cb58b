"""Norm clipping of model updates, shared by the server's and the clients' privacy pieces.

Differential privacy bounds each client's influence by scaling its update (new model minus
the model it received) to an L2 norm of at most ``C``. The server clips in the
server-side wrappers, a client clips its own update in the client-side ones; both must
clip the same way, so the rule lives here, below both layers.
"""

from __future__ import annotations

import numpy as np

from fedsilo.common.typing import NDArrays

__all__ = ["KEY_CLIPPING_NORM", "KEY_NORM_BIT", "clip_update", "l2_norm"]

KEY_CLIPPING_NORM = "clipping_norm"
"""Config key carrying the clipping norm to clients (Flower's name)."""
KEY_NORM_BIT = "norm_bit"
"""Metric key a client sets to say its update was clipped (Flower's name)."""


def l2_norm(arrays: NDArrays) -> float:
    """The L2 norm of all layers taken as one flat vector."""
    return float(np.sqrt(sum(float(np.vdot(a, a).real) for a in arrays)))


def clip_update(update: NDArrays, clipping_norm: float) -> tuple[NDArrays, bool]:
    """Scale ``update`` to L2 norm at most ``clipping_norm``; say whether it was scaled.

    Returns new arrays in the input dtypes; the input is left as it is.
    """
    if not clipping_norm > 0:
        raise ValueError(f"clipping_norm must be positive, got {clipping_norm}")
    norm = l2_norm(update)
    if norm <= clipping_norm:
        return [np.array(u) for u in update], False
    scale = clipping_norm / norm
    return [(u * scale).astype(u.dtype, copy=False) for u in update], True
