from __future__ import annotations

import numpy as np
import pytest

from fedsilo.server.strategy.aggregate import (
    add_weighted,
    add_weighted_many,
    aggregate_weighted_mean,
    weighted_loss_avg,
)


def test_weighted_mean_by_hand() -> None:
    results = [([np.array([1.0, 2.0]), np.array([[0.0]])], 1),
               ([np.array([4.0, 8.0]), np.array([[3.0]])], 2)]
    # (1*1 + 2*4)/3 = 3, (1*2 + 2*8)/3 = 6, (0 + 2*3)/3 = 2
    got = aggregate_weighted_mean(results)
    np.testing.assert_allclose(got[0], [3.0, 6.0])
    np.testing.assert_allclose(got[1], [[2.0]])


def test_weighted_mean_matches_the_formula_on_random_inputs() -> None:
    rng = np.random.default_rng(7)
    results = [([rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3)],
                int(rng.integers(1, 100))) for _ in range(6)]
    total = sum(n for _, n in results)
    expected = [sum(n * layers[i].astype(np.float64) for layers, n in results) / total
                for i in range(2)]
    got = aggregate_weighted_mean(results)
    assert got[0].dtype == np.float32 and got[1].dtype == np.float64
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12)


def test_folding_a_batch_equals_the_formula_and_folding_one_at_a_time() -> None:
    """Layers longer than a fold step and not a multiple of it, of several dtypes."""
    rng = np.random.default_rng(3)
    batch = [([rng.normal(size=(201, 199)).astype(np.float32), rng.normal(size=50_001),
               rng.integers(-5, 5, size=7)], float(rng.integers(1, 50))) for _ in range(9)]
    exact = [sum(w * layers[i].astype(np.float64) for layers, w in batch) for i in range(3)]
    together = add_weighted_many([], batch)
    one_by_one: list[np.ndarray] = []
    for layers, weight in batch:
        one_by_one = add_weighted(one_by_one, layers, weight)
    for got, sequential, want in zip(together, one_by_one, exact, strict=True):
        assert got.dtype == np.float64 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(got, sequential, rtol=1e-12, atol=1e-9)


def test_integer_layers_average_to_float() -> None:
    got = aggregate_weighted_mean([([np.array([1, 2])], 1), ([np.array([2, 3])], 1)])
    np.testing.assert_allclose(got[0], [1.5, 2.5])


def test_shape_mismatch_is_an_error_not_a_broadcast() -> None:
    with pytest.raises(ValueError, match="shape"):
        aggregate_weighted_mean([([np.ones(3)], 1), ([np.ones(1)], 1)])


def test_no_results_and_zero_examples_are_errors() -> None:
    with pytest.raises(ValueError):
        aggregate_weighted_mean([])
    with pytest.raises(ValueError, match="positive"):
        aggregate_weighted_mean([([np.ones(2)], 0)])


def test_weighted_loss() -> None:
    assert weighted_loss_avg([(1, 1.0), (3, 2.0)]) == pytest.approx(1.75)
