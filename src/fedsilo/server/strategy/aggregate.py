"""Aggregation rules as pure functions: arrays in, arrays out, no I/O."""

from __future__ import annotations

import numpy as np

from fedsilo.common.typing import NDArray, NDArrays

__all__ = ["aggregate_weighted_mean", "weighted_loss_avg"]


def aggregate_weighted_mean(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Example-weighted mean of each layer: sum_k n_k w_k / sum_k n_k (FedAvg).

    Sums in float64 for accuracy and returns each layer in its input dtype.
    """
    if not results:
        raise ValueError("aggregate_weighted_mean needs at least one result")
    total = sum(int(n) for _, n in results)
    if total <= 0:
        raise ValueError(
            f"the results hold {total} examples in all; the weights need a positive sum")
    first = results[0][0]
    sums: list[NDArray] = [np.zeros(layer.shape, dtype=np.float64) for layer in first]
    for layers, num_examples in results:
        if len(layers) != len(first):
            raise ValueError(f"results have {len(layers)} and {len(first)} layers")
        weight = float(num_examples)
        for index, (acc, layer) in enumerate(zip(sums, layers, strict=True)):
            if layer.shape != acc.shape:
                raise ValueError(f"layer {index} has shape {layer.shape}, expected {acc.shape}")
            acc += weight * layer
    return [
        (acc / total).astype(ref.dtype if np.issubdtype(ref.dtype, np.floating) else np.float64,
                             copy=False)
        for acc, ref in zip(sums, first, strict=True)
    ]


def weighted_loss_avg(results: list[tuple[int, float]]) -> float:
    """Example-weighted mean of client losses."""
    total = sum(n for n, _ in results)
    if total <= 0:
        raise ValueError("weighted_loss_avg needs a positive total number of examples")
    return float(sum(n * loss for n, loss in results) / total)
