"""Feeds the same saved client results to one implementation's strategies, round by round.

    python reference_driver.py IMPL SPEC.json INPUTS.npz OUTPUTS.npz

IMPL is ``fedsilo`` or ``flwr``; the same code drives either package (imported as ``fl``),
so the differential test compares the strategies and nothing else. Run with the
interpreter of the venv that has the package. For each case and round it saves the
aggregated parameters, and the server optimizer's ``m_t``/``v_t`` or the adaptive clipping
norm where the strategy has them.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import numpy as np


def run(impl: str, spec: dict[str, Any], inputs: Any) -> dict[str, np.ndarray]:
    fl: Any = importlib.import_module("fedsilo" if impl == "fedsilo" else "flwr")
    common = fl.common
    out: dict[str, np.ndarray] = {}
    for case in spec["cases"]:
        cid, layers = case["id"], case["layers"]
        current = [inputs[f"{cid}_init_{i}"] for i in range(layers)]
        kwargs = dict(case["kwargs"])
        if case.get("initial_parameters"):
            kwargs["initial_parameters"] = common.ndarrays_to_parameters(current)
        if "loss" in case:
            loss = case["loss"]
            kwargs["evaluate_fn"] = lambda r, p, c, loss=loss: (loss, {})
        cls = getattr(fl.server.strategy, case["cls"][impl])
        if case.get("wrap"):
            strategy = cls(fl.server.strategy.FedAvg(), **kwargs)
        else:
            strategy = cls(**kwargs)
        for r in range(case["rounds"]):
            results = []
            for k, n in enumerate(case["num_examples"][r]):
                arrays = [inputs[f"{cid}_r{r}_c{k}_{i}"] for i in range(layers)]
                res = common.FitRes(status=common.Status(code=common.Code.OK, message=""),
                                    parameters=common.ndarrays_to_parameters(arrays),
                                    num_examples=n, metrics={})
                results.append((None, res))
            if case["cls"]["flwr"] == "QFedAvg":
                if impl == "fedsilo":
                    strategy.pre_weights_ = common.ndarrays_to_parameters(current)
                else:
                    strategy.pre_weights = current
            if hasattr(strategy, "current_round_params"):
                strategy.current_round_params = [np.array(c) for c in current]
            parameters, _ = strategy.aggregate_fit(r + 1, results, [])
            current = common.parameters_to_ndarrays(parameters)
            for i, layer in enumerate(current):
                out[f"{cid}_r{r}_out_{i}"] = np.asarray(layer)
            for moment in ("m_t", "v_t"):
                for i, layer in enumerate(getattr(strategy, moment, None) or []):
                    out[f"{cid}_r{r}_{moment}_{i}"] = np.asarray(layer)
            if hasattr(strategy, "clipping_norm"):
                out[f"{cid}_r{r}_clipping_norm"] = np.asarray(float(strategy.clipping_norm))
    return out


if __name__ == "__main__":
    impl, spec_path, inputs_path, outputs_path = sys.argv[1:5]
    with open(spec_path) as handle:
        loaded = json.load(handle)
    np.savez(outputs_path, **run(impl, loaded, np.load(inputs_path)))  # type: ignore[arg-type]
