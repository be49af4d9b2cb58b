"""Example data for the MLP app: Gaussian clusters, one channel per site and a test set.

Each class is a cluster around its own centre in ``n_features`` dimensions; each site gets a
different mix of the classes (its own share of each), so the sites are not alike. A channel
is a directory holding ``train.npz`` with arrays ``X`` and ``y``; the server's directory holds
``test.npz`` of the same shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["make_clusters", "write_example_data"]


def make_clusters(n: int, n_features: int, n_classes: int, rng: np.random.Generator,
                  class_weights: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points: a class drawn by ``class_weights``, a point around its centre."""
    y = rng.choice(n_classes, size=n, p=class_weights)
    X = centres[y] + rng.normal(scale=1.0, size=(n, n_features))
    return X.astype(np.float64), y.astype(np.int64)


def write_example_data(root: Path, n_sites: int = 3, *, n_per_site: int = 400,
                       n_test: int = 600, n_features: int = 8, n_classes: int = 3,
                       seed: int = 0) -> dict[str, Path]:
    """Write ``root/site<N>/train.npz`` and ``root/server/test.npz``; return the channels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))
    channels: dict[str, Path] = {}
    for index in range(n_sites):
        weights = rng.dirichlet(np.full(n_classes, 2.0))
        X, y = make_clusters(n_per_site, n_features, n_classes, rng, weights, centres)
        channel = root / f"site{index + 1}"
        channel.mkdir(parents=True, exist_ok=True)
        np.savez(channel / "train.npz", X=X, y=y)
        channels[channel.name] = channel
    X, y = make_clusters(n_test, n_features, n_classes, rng, np.full(n_classes, 1 / n_classes),
                         centres)
    (root / "server").mkdir(parents=True, exist_ok=True)
    np.savez(root / "server" / "test.npz", X=X, y=y)
    return channels
