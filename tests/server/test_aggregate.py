from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import pytest

import fedsilo as fl
from fedsilo.server.strategy.aggregate import (
    add_weighted,
    add_weighted_many,
    aggregate_weighted_mean,
    start_weighted,
    weighted_loss_avg,
    weighted_mean_from_sums,
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


@pytest.mark.parametrize("n_results", [1, 2, 9, 300])
def test_float32_mean_is_within_float32_rounding_of_the_formula(n_results: int) -> None:
    """float32 layers are averaged in float32: the error bound is N roundings of float32
    relative to the weighted mean of absolute values (plus the final rounding)."""
    rng = np.random.default_rng(n_results)
    sizes = [(301, 107), (7,), (40_000,)]  # longer and shorter than a block, not a multiple
    results = [([(rng.normal(size=size) * 10.0 ** rng.integers(-3, 4)).astype(np.float32)
                 for size in sizes], int(rng.integers(1, 10_000))) for _ in range(n_results)]
    total = sum(n for _, n in results)
    got = aggregate_weighted_mean(results)
    for index, layer in enumerate(got):
        exact = sum(n * layers[index].astype(np.float64) for layers, n in results) / total
        scale = sum(n * np.abs(layers[index].astype(np.float64)) for layers, n in results) / total
        bound = (n_results + 2) * np.finfo(np.float32).eps * scale
        assert layer.dtype == np.float32 and layer.shape == exact.shape
        assert np.all(np.abs(layer - exact) <= bound)


def test_a_layer_float32_in_only_some_results_is_summed_in_float64() -> None:
    rng = np.random.default_rng(5)
    results = [([rng.normal(size=20_000).astype(np.float32)], 3),
               ([rng.normal(size=20_000)], 5)]
    exact = (3 * results[0][0][0].astype(np.float64) + 5 * results[1][0][0]) / 8
    got = aggregate_weighted_mean(results)
    assert got[0].dtype == np.float32  # the first result's dtype, as before
    np.testing.assert_allclose(got[0], exact.astype(np.float32), rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("size", [1, 5, 32_767, 32_768, 32_769, 100_001])
def test_mean_from_sums_narrows_in_place_exactly_like_astype(dtype: type, size: int) -> None:
    sums = np.random.default_rng(size).normal(size=size) * 3.0
    want = (sums / 7.0).astype(dtype)
    buffer = sums.copy()
    got = weighted_mean_from_sums([buffer.reshape(1, -1)], 7.0, [np.empty(0, dtype=dtype)])[0]
    assert got.dtype == want.dtype and got.shape == (1, size)
    np.testing.assert_array_equal(got.reshape(-1), want)
    assert size == 1 or np.shares_memory(got, buffer)  # no model-sized temporary


def test_streaming_fedavg_keeps_no_reply_alive() -> None:
    """After ``add``, the reply's arrays can be freed: the round holds the sums only."""
    import gc
    import weakref

    accumulator = fl.server.strategy.FedAvg().fit_accumulator(
        1, fl.common.ndarrays_to_parameters([np.zeros(3, dtype=np.float32)]))
    assert accumulator is not None
    gone, results = [], []
    for k in range(3):
        update = np.full(3, float(k), dtype=np.float32)
        gone.append(weakref.ref(update))
        res = fl.common.FitRes(fl.common.Status(fl.common.Code.OK, ""),
                               fl.common.Parameters([], ""), k + 1, {})
        accumulator.add(None, res, [update])  # type: ignore[arg-type]
        results.append((None, res))
        del update
    gc.collect()
    assert all(ref() is None for ref in gone)
    parameters, _ = accumulator.finish(results, [])  # type: ignore[arg-type]
    assert parameters is not None
    mean = fl.common.parameters_to_ndarrays(parameters)[0]
    assert mean.dtype == np.float32
    np.testing.assert_allclose(mean, np.full(3, (0 * 1 + 1 * 2 + 2 * 3) / 6), rtol=1e-7)


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


def test_starting_sums_in_a_used_buffer_ignores_what_it_held() -> None:
    rng = np.random.default_rng(11)
    layers = [rng.normal(size=(70, 501)).astype(np.float32), rng.integers(-9, 9, size=33)]
    buffer = np.full(8 * (70 * 501 + 33), 0xFF, dtype=np.uint8)  # NaN bits everywhere
    sums = start_weighted(layers, 3.0, buffer)
    for got, layer in zip(sums, layers, strict=True):
        assert got.dtype == np.float64 and got.shape == layer.shape
        assert np.shares_memory(got, buffer)
        np.testing.assert_array_equal(got, 3.0 * layer.astype(np.float64))
    more = [rng.normal(size=(70, 501)).astype(np.float32), rng.integers(-9, 9, size=33)]
    sums = add_weighted(sums, more, 2.0)
    for got, a, b in zip(sums, layers, more, strict=True):
        np.testing.assert_allclose(got, 3.0 * a.astype(np.float64) + 2.0 * b, rtol=1e-15)
    with pytest.raises(ValueError, match="uint8 buffer of"):
        start_weighted(layers, 1.0, np.empty(8, dtype=np.uint8))


def _fit_res(n: int) -> fl.common.FitRes:
    return fl.common.FitRes(fl.common.Status(fl.common.Code.OK, ""),
                            fl.common.Parameters([], ""), n, {})


def test_streaming_fedavg_reuses_its_sums_but_never_under_a_mean_still_held() -> None:
    """A strategy's sums go to its next round once the mean written over them is let go; a
    strategy that keeps the aggregate keeps it intact."""
    class Keeping(fl.server.strategy.FedAvg):
        def __init__(self) -> None:
            super().__init__()
            self.kept: list[list[np.ndarray]] = []

        def conclude_fit(self, server_round: int, aggregate: Any, results: Any) -> Any:
            self.kept.append(aggregate)  # views of the sums' buffer
            return super().conclude_fit(server_round, aggregate, results)

    start = fl.common.ndarrays_to_parameters([np.zeros(50_000, dtype=np.float32)])
    plain, keeping = fl.server.strategy.FedAvg(), Keeping()
    buffers = []  # each round's sums buffer, held weakly
    for strategy, value in ((plain, 1.0), (plain, 2.0), (keeping, 3.0), (keeping, 4.0)):
        accumulator = strategy.fit_accumulator(1, start)
        assert accumulator is not None
        accumulator.add(None, _fit_res(2), [np.full(50_000, value, dtype=np.float32)])
        buffers.append(weakref.ref(accumulator.sums_[0].base))  # type: ignore[attr-defined]
        parameters, _ = accumulator.finish([(None, _fit_res(2))], [])  # type: ignore[list-item]
        assert parameters is not None
        np.testing.assert_array_equal(fl.common.parameters_to_ndarrays(parameters)[0], value)
    assert buffers[1]() is buffers[0]() is not None  # the first round's mean was let go
    assert buffers[3]() is not buffers[2]()  # the third round's mean is still held
    assert buffers[2]() is not None
    assert [float(kept[0][0]) for kept in keeping.kept] == [3.0, 4.0]
