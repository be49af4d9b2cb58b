"""Runs the public functions of ``<package>.server.strategy.aggregate`` on saved inputs.

    python aggregate_driver.py PACKAGE INPUTS.npz OUTPUTS.npz

PACKAGE is ``fedsilo`` or ``flwr``; the calls are the same for both (Flower's names and
parameters), so the test compares the functions and nothing else. Run it with the
interpreter of the venv that has the package.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import numpy as np


def results(inputs: Any, prefix: str) -> list[tuple[list[np.ndarray], int]]:
    counts = inputs[f"{prefix}_counts"]
    return [([inputs[f"{prefix}_{k}_0"], inputs[f"{prefix}_{k}_1"]], int(n))
            for k, n in enumerate(counts)]


def run(package: str, inputs: Any) -> dict[str, np.ndarray]:
    agg = importlib.import_module(f"{package}.server.strategy.aggregate")
    common = importlib.import_module(f"{package}.common")
    out: dict[str, np.ndarray] = {}

    def keep(name: str, layers: list[np.ndarray]) -> None:
        for i, layer in enumerate(layers):
            out[f"{name}_{i}"] = np.asarray(layer)

    small, noisy = results(inputs, "small"), results(inputs, "noisy")
    keep("aggregate_small", agg.aggregate(small))
    keep("aggregate_noisy", agg.aggregate(noisy))
    status = common.Status(code=common.Code.OK, message="")
    fit_results = [(None, common.FitRes(status=status,
                                        parameters=common.ndarrays_to_parameters(layers),
                                        num_examples=n, metrics={}))
                   for layers, n in noisy]
    keep("aggregate_inplace", agg.aggregate_inplace(fit_results))
    keep("aggregate_median", agg.aggregate_median(noisy))
    keep("aggregate_trimmed_avg", agg.aggregate_trimmed_avg(noisy, proportiontocut=0.2))
    keep("aggregate_krum", agg.aggregate_krum(noisy, num_malicious=1, to_keep=0))
    keep("multi_krum", agg.aggregate_krum(noisy, num_malicious=1, to_keep=3))
    keep("aggregate_bulyan", agg.aggregate_bulyan(
        noisy, num_malicious=1, aggregation_rule=agg.aggregate_krum, to_keep=0))
    deltas = [layers for layers, _ in results(inputs, "delta")]
    keep("aggregate_qffl", agg.aggregate_qffl(
        [inputs["qffl_w_0"], inputs["qffl_w_1"]], deltas, list(inputs["qffl_h"])))
    out["weighted_loss_avg"] = np.array(agg.weighted_loss_avg(
        [(int(n), float(loss)) for n, loss in zip(inputs["noisy_counts"], inputs["losses"],
                                                    strict=True)]))
    return out


def main() -> None:
    package, inputs_path, outputs_path = sys.argv[1:4]
    with np.load(inputs_path) as inputs:
        np.savez(outputs_path, **run(package, inputs))


if __name__ == "__main__":
    main()
