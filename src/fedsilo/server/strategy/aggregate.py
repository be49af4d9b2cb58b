"""Aggregation rules as pure functions: arrays in, arrays out, no I/O."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsilo.common.typing import NDArray, NDArrays

__all__ = [
    "add_weighted",
    "aggregate_weighted_mean",
    "weighted_loss_avg",
    "weighted_mean_from_sums",
]


def aggregate_weighted_mean(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Example-weighted mean of each layer: sum_k n_k w_k / sum_k n_k (FedAvg).

    Sums in float64 for accuracy and returns each layer in its input dtype
    (float64 for integer layers).
    """
    if not results:
        raise ValueError("aggregate_weighted_mean needs at least one result")
    sums: NDArrays = []
    total = 0
    for layers, num_examples in results:
        sums = add_weighted(sums, layers, num_examples)
        total += int(num_examples)
    return weighted_mean_from_sums(sums, total, results[0][0])


def add_weighted(sums: NDArrays, layers: NDArrays, weight: float) -> NDArrays:
    """Fold ``weight * layers`` into the float64 running ``sums`` (empty: start new sums).

    The running sums are updated in place and returned; memory stays one model.
    """
    if not sums:
        sums = [np.zeros(layer.shape, dtype=np.float64) for layer in layers]
    if len(layers) != len(sums):
        raise ValueError(f"results have {len(layers)} and {len(sums)} layers")
    for index, (acc, layer) in enumerate(zip(sums, layers, strict=True)):
        if layer.shape != acc.shape:
            raise ValueError(f"layer {index} has shape {layer.shape}, expected {acc.shape}")
        if weight == 1:
            acc += layer
        else:
            np.add(acc, np.multiply(layer, float(weight), dtype=np.float64), out=acc)
    return sums


def weighted_mean_from_sums(sums: NDArrays, total: float, like: NDArrays) -> NDArrays:
    """Divide running sums by the total weight; cast each layer to the dtype of ``like``."""
    if total <= 0:
        raise ValueError(
            f"the results hold {total} examples in all; the weights need a positive sum")
    return [
        (acc / total).astype(_float_dtype(ref), copy=False)
        for acc, ref in zip(sums, like, strict=True)
    ]


def _float_dtype(reference: NDArray) -> np.dtype[Any]:
    return reference.dtype if np.issubdtype(reference.dtype, np.floating) else np.dtype(np.float64)


def weighted_loss_avg(results: list[tuple[int, float]]) -> float:
    """Example-weighted mean of client losses."""
    total = sum(n for n, _ in results)
    if total <= 0:
        raise ValueError("weighted_loss_avg needs a positive total number of examples")
    return float(sum(n * loss for n, loss in results) / total)
