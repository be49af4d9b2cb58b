"""fedsilo's strategies against Flower's on the same randomized results.

Both packages get identical client results (saved to .npz); Flower runs in its own venv
through a subprocess. Parameters, FedOpt moments over several rounds and the adaptive
clipping norm must agree to 1e-6. The DP wrappers run with noise_multiplier 0 so that only
their deterministic part (clipping, norm adaptation) is compared: the noise itself is
tested statistically in test_privacy.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from tests.interop.flower_envs import FlowerEnv
from tests.server.strategy import reference_driver

DRIVER = Path(reference_driver.__file__)


def same(name: str) -> dict[str, str]:
    return {"flwr": name, "fedsilo": name}


CASES: list[dict[str, Any]] = [
    {"cls": same("FedAvg"), "kwargs": {}, "rounds": 1},
    {"cls": same("FedProx"), "kwargs": {"proximal_mu": 0.3}, "rounds": 1},
    {"cls": same("FaultTolerantFedAvg"), "kwargs": {}, "rounds": 1},
    {"cls": same("FedAvgM"), "kwargs": {"server_learning_rate": 0.7, "server_momentum": 0.9},
     "rounds": 4, "initial_parameters": True},
    {"cls": same("FedOpt"), "kwargs": {"eta": 0.05, "beta_1": 0.5, "beta_2": 0.3},
     "rounds": 4, "initial_parameters": True},
    {"cls": same("FedAdagrad"), "kwargs": {}, "rounds": 4, "initial_parameters": True},
    {"cls": same("FedAdam"), "kwargs": {}, "rounds": 4, "initial_parameters": True},
    {"cls": same("FedYogi"), "kwargs": {}, "rounds": 4, "initial_parameters": True},
    {"cls": same("QFedAvg"), "kwargs": {"q_param": 0.5, "qffl_learning_rate": 0.2},
     "rounds": 3, "loss": 0.8},
    {"cls": same("FedMedian"), "kwargs": {}, "rounds": 1},
    {"cls": same("FedTrimmedAvg"), "kwargs": {"beta": 0.2}, "rounds": 1},
    {"cls": same("Krum"), "kwargs": {"num_malicious_clients": 2}, "rounds": 1},
    {"cls": {"flwr": "Krum", "fedsilo": "MultiKrum"},
     "kwargs": {"num_malicious_clients": 2, "num_clients_to_keep": 3}, "rounds": 1},
    {"cls": same("Bulyan"), "kwargs": {"num_malicious_clients": 1, "to_keep": 0}, "rounds": 1},
    {"cls": same("DifferentialPrivacyServerSideFixedClipping"), "wrap": True, "rounds": 2,
     "kwargs": {"noise_multiplier": 0.0, "clipping_norm": 0.8, "num_sampled_clients": 9}},
    # One round: Flower then moves C with the sign flipped (see dp_adaptive_clipping.py),
    # so only the first round's clipping with the initial norm is comparable.
    {"cls": same("DifferentialPrivacyServerSideAdaptiveClipping"), "wrap": True, "rounds": 1,
     "kwargs": {"noise_multiplier": 0.0, "num_sampled_clients": 9,
                "initial_clipping_norm": 0.5}},
]


ADAPTIVE = f"case{len(CASES) - 1}_"


def make_inputs(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Random client results: 9 clients, a float32 matrix and a float64 vector layer, with
    2 clients far off (so the robust rules have something to reject)."""
    shapes = [((6, 5), np.float32), ((7,), np.float64)]
    arrays: dict[str, np.ndarray] = {}
    cases = []
    for index, case in enumerate(CASES):
        cid = f"case{index}"
        base = [rng.normal(size=s).astype(t) for s, t in shapes]
        for i, layer in enumerate(base):
            arrays[f"{cid}_init_{i}"] = layer
        counts = []
        for r in range(case["rounds"]):
            counts.append([int(n) for n in rng.integers(1, 200, size=9)])
            for k in range(9):
                scale = 5.0 if k >= 7 else 0.3
                for i, layer in enumerate(base):
                    arrays[f"{cid}_r{r}_c{k}_{i}"] = (
                        layer + scale * rng.normal(size=layer.shape)).astype(layer.dtype)
        cases.append({**case, "id": cid, "layers": len(shapes), "num_examples": counts})
    return {"cases": cases}, arrays


def test_strategies_match_flower_on_random_results(
    flwr_newest_env: FlowerEnv, tmp_path: Path
) -> None:
    spec, arrays = make_inputs(np.random.default_rng(20240611))
    spec_path, inputs_path = tmp_path / "spec.json", tmp_path / "inputs.npz"
    spec_path.write_text(json.dumps(spec))
    np.savez(inputs_path, **arrays)  # type: ignore[arg-type]
    flower_out = tmp_path / "flwr.npz"
    done = subprocess.run(
        [flwr_newest_env.python, str(DRIVER), "flwr", str(spec_path), str(inputs_path),
         str(flower_out)],
        capture_output=True, text=True, timeout=240, env=flwr_newest_env.environ())
    assert done.returncode == 0, done.stderr[-4000:]
    theirs = np.load(flower_out)
    ours = reference_driver.run("fedsilo", spec, np.load(inputs_path))
    assert set(ours) == set(theirs.files)
    compared: dict[str, int] = {}
    for key in sorted(theirs.files):
        if key.endswith("clipping_norm") and key.startswith(ADAPTIVE):
            continue
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, atol=1e-6, err_msg=key)
        case = spec["cases"][int(key.split("_")[0][4:])]["cls"]["fedsilo"]
        compared[case] = compared.get(case, 0) + 1
    # Every case produced outputs, and the optimizers' moments were compared every round.
    assert len(compared) == len({c["cls"]["fedsilo"] for c in CASES})
    for name in ("FedAdagrad", "FedAdam", "FedYogi"):
        assert compared[name] == 4 * 6  # 4 rounds x (2 layers x (params, m_t, v_t))
    assert compared["FedOpt"] == 4 * 2  # Flower's FedOpt base takes no step, keeps no moments
    # The poisoned clients really move FedAvg and not the robust rules.
    assert not np.allclose(ours["case0_r0_out_0"], ours["case9_r0_out_0"], atol=0.05)
