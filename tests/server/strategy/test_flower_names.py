"""``fedsilo.server.strategy.aggregate`` offers Flower's public functions under Flower's names,
parameters and return shapes, and they give Flower's results."""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fedsilo.common import (
    Code,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from fedsilo.server.strategy import FedAvg, FedAvgM
from fedsilo.server.strategy import aggregate as agg
from tests.interop.flower_envs import FlowerEnv
from tests.server.strategy import aggregate_driver

DRIVER = Path(aggregate_driver.__file__)

# Flower's public functions and their parameter names (flwr/server/strategy/aggregate.py).
FLOWER_SIGNATURES = {
    "aggregate": ["results"],
    "aggregate_inplace": ["results"],
    "aggregate_median": ["results"],
    "aggregate_krum": ["results", "num_malicious", "to_keep"],
    "aggregate_bulyan": ["results", "num_malicious", "aggregation_rule",
                         "aggregation_rule_kwargs"],
    "weighted_loss_avg": ["results"],
    "aggregate_qffl": ["parameters", "deltas", "hs_fll"],
    "aggregate_trimmed_avg": ["results", "proportiontocut"],
}


@pytest.mark.parametrize("name", sorted(FLOWER_SIGNATURES))
def test_flowers_functions_exist_with_flowers_parameters(name: str) -> None:
    function = getattr(agg, name)
    assert name in agg.__all__
    assert list(inspect.signature(function).parameters) == FLOWER_SIGNATURES[name]


def test_fedsilo_names_are_the_same_functions_not_copies() -> None:
    assert agg.aggregate_weighted_mean is agg.aggregate
    assert agg.aggregate_trimmed_mean is agg.aggregate_trimmed_avg


def test_float32_mean_of_small_integers_is_exact() -> None:
    # Every client sends 3 with weights 2 and 7 (or 1 with 2, 4, 1): the mean is 3 (1).
    # Scaling by the normalized weights (2/9 and 7/9, or 2/7, 4/7 and 1/7, rounded to
    # float32) gave 3.0000002 for a single value (1.0000001 for any size).
    for value, counts in ((3.0, (2, 7)), (1.0, (2, 4, 1))):
        results = [([np.full(4, value, dtype=np.float32)], n) for n in counts]
        mean = agg.aggregate(results)[0]
        assert mean.dtype == np.float32
        assert mean.tolist() == [value] * 4


@pytest.mark.parametrize("strategy", [
    FedAvg(), FedAvgM(server_momentum=0.9,
                      initial_parameters=ndarrays_to_parameters([np.full(4, 1.0, np.float32)]))],
    ids=["FedAvg", "FedAvgM"])
def test_strategies_average_small_integers_exactly(strategy: FedAvg) -> None:
    # Every client sends 1 with weights 2, 4, 1; normalized weights gave 1.0000001.
    fit_results = [(None, FitRes(Status(Code.OK, ""),
                                 ndarrays_to_parameters([np.full(4, 1.0, np.float32)]), n, {}))
                   for n in (2, 4, 1)]
    parameters, _ = strategy.aggregate_fit(1, fit_results, [])  # type: ignore[arg-type]
    assert parameters is not None
    assert parameters_to_ndarrays(parameters)[0].tolist() == [1.0] * 4


def test_float32_mean_is_the_rounded_exact_quotient_on_integer_inputs() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        clients = int(rng.integers(2, 12))
        values = rng.integers(-1000, 1000, size=(clients, 257)).astype(np.float32)
        counts = [int(n) for n in rng.integers(1, 5000, size=clients)]
        got = agg.aggregate([([v], n) for v, n in zip(values, counts, strict=True)])[0]
        # Sum and total are exact integers (below 2**24): the correctly rounded quotient.
        exact_sum = (values.astype(np.int64) * np.array(counts)[:, None]).sum(axis=0)
        want = exact_sum.astype(np.float32) / np.float32(sum(counts))
        np.testing.assert_array_equal(got, want)


def test_float32_mean_with_counts_beyond_float32_integers_stays_within_rounding() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=(4, 1000)).astype(np.float32)
    counts = [2**30 + 7, 3, 2**25 + 1, 12345]
    got = agg.aggregate([([v], n) for v, n in zip(values, counts, strict=True)])[0]
    exact = (values.astype(np.float64) * np.array(counts, dtype=np.float64)[:, None]).sum(0)
    exact /= sum(counts)
    scale = (np.abs(values.astype(np.float64)) * np.array(counts)[:, None]).sum(0) / sum(counts)
    assert np.all(np.abs(got - exact) <= 8 * np.finfo(np.float32).eps * scale)


def test_aggregate_inplace_reads_fit_results_and_equals_the_mean() -> None:
    layers = [[np.array([1.0, 2.0], dtype=np.float32), np.array([[4.0]])],
              [np.array([3.0, 6.0], dtype=np.float32), np.array([[0.0]])]]
    fit_results = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(ls), n, {}))
                   for ls, n in zip(layers, (1, 3), strict=True)]
    got = agg.aggregate_inplace(fit_results)  # type: ignore[arg-type]
    assert got[0].dtype == np.float32 and got[1].dtype == np.float64
    assert got[0].tolist() == [2.5, 5.0] and got[1].tolist() == [[1.0]]


def test_bulyan_takes_a_selection_rule_and_its_arguments() -> None:
    one = [([np.array([v])], 1) for v in (0.0, 1.0, 2.0, 3.0, 4.0, 50.0, -60.0)]
    picked: list[int] = []

    def krum_recording(results: list, num_malicious: int, to_keep: int) -> list:
        picked.append(len(results))
        return agg.aggregate_krum(results, num_malicious, to_keep)

    got = agg.aggregate_bulyan(one, 1, krum_recording, to_keep=0)
    assert got[0][0] == pytest.approx(2.0)
    assert picked == [7, 6, 5, 4, 3]  # theta = n - 2f picks, each from those left
    assert len(one) == 7  # the caller's list is left as it was


def test_bulyan_refuses_a_rule_that_blends_models() -> None:
    one = [([np.array([float(v)])], 1) for v in range(7)]
    with pytest.raises(ValueError, match="one of the models"):
        agg.aggregate_bulyan(one, 1, agg.aggregate_krum, to_keep=3)


def test_qffl_with_flowers_arguments() -> None:
    # w - sum_k D_k / sum_k h_k = [1, 2] - ([2, 4] + [1, 0]) / (1 + 3) = [0.25, 1.0]
    got = agg.aggregate_qffl([np.array([1.0, 2.0])],
                             [[np.array([2.0, 4.0])], [np.array([1.0, 0.0])]], [1.0, 3.0])
    np.testing.assert_allclose(got[0], [0.25, 1.0])


def _inputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    inputs: dict[str, np.ndarray] = {}
    for prefix, clients in (("small", 5), ("noisy", 7), ("delta", 4)):
        counts = rng.integers(1, 200, size=clients)
        inputs[f"{prefix}_counts"] = counts
        for k in range(clients):
            if prefix == "small":
                inputs[f"{prefix}_{k}_0"] = rng.integers(-9, 9, (3, 4)).astype(np.float32)
                inputs[f"{prefix}_{k}_1"] = rng.integers(-9, 9, (5,)).astype(np.float32)
            else:
                inputs[f"{prefix}_{k}_0"] = rng.normal(size=(3, 4)).astype(np.float32)
                inputs[f"{prefix}_{k}_1"] = rng.normal(size=(5,))
    inputs["qffl_w_0"] = rng.normal(size=(3, 4))
    inputs["qffl_w_1"] = rng.normal(size=(5,))
    inputs["qffl_h"] = rng.uniform(1, 5, size=4)
    inputs["losses"] = rng.uniform(0, 3, size=7)
    return inputs


@pytest.mark.flwr
@pytest.mark.timeout(900, func_only=True)
def test_the_functions_give_flowers_results(flwr_newest_env: FlowerEnv, tmp_path: Path) -> None:
    inputs_path, theirs_path = tmp_path / "inputs.npz", tmp_path / "flwr.npz"
    np.savez(inputs_path, **_inputs(np.random.default_rng(11)))
    done = subprocess.run([flwr_newest_env.python, str(DRIVER), "flwr", str(inputs_path),
                           str(theirs_path)], capture_output=True, text=True, timeout=600,
                          env=flwr_newest_env.environ())
    assert done.returncode == 0, done.stderr
    with np.load(inputs_path) as inputs:
        ours = aggregate_driver.run("fedsilo", inputs)
    with np.load(theirs_path) as theirs:
        assert sorted(theirs.files) == sorted(ours)
        for key in sorted(ours):
            assert ours[key].dtype == theirs[key].dtype, key
            assert ours[key].shape == theirs[key].shape, key
            if key.startswith("aggregate_small"):  # exact in Flower: exact here
                np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
            else:
                np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-6, atol=1e-7,
                                           err_msg=key)
