"""A reply's tensors are checked for NaN and Inf wherever the bad value sits."""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo.common.exceptions import InvalidUpdate
from fedsilo.common.parameter import ndarrays_to_parameters
from fedsilo.common.typing import Code, FitRes, Status
from fedsilo.server.validation import _FINITE_CHUNK, _all_finite, check_fit_res


def _res(*arrays: np.ndarray) -> FitRes:
    return FitRes(status=Status(Code.OK, ""), parameters=ndarrays_to_parameters(list(arrays)),
                  num_examples=3, metrics={})


SIZE = 3 * _FINITE_CHUNK + 17  # several chunks and a short last one


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.complex64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, _FINITE_CHUNK - 1, _FINITE_CHUNK, SIZE - 1])
def test_a_bad_value_anywhere_is_refused(dtype: type, bad: float, where: int) -> None:
    update = np.ones(SIZE, dtype=dtype)
    update[where] = bad
    with pytest.raises(InvalidUpdate, match="tensor 1 holds NaN or Inf"):
        check_fit_res("c", _res(np.zeros((2, 3), dtype=np.float32), update), None)


def test_finite_updates_pass_in_their_shapes() -> None:
    layers = [np.arange(SIZE, dtype=np.float32).reshape(-1, 1),
              np.full((5, 7, 3), 1e38, dtype=np.float32), np.arange(10, dtype=np.int64),
              np.zeros(0, dtype=np.float64)]
    arrays = check_fit_res("c", _res(*layers), None)
    for got, want in zip(arrays, layers, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype


def test_a_bad_value_in_a_matrix_is_refused() -> None:
    update = np.ones((SIZE // 4, 4), dtype=np.float32)
    update[-1, 3] = np.nan
    with pytest.raises(InvalidUpdate, match="tensor 0 holds NaN or Inf"):
        check_fit_res("c", _res(update), None)


def _placed(values: np.ndarray, shift: int) -> np.ndarray:
    """``values`` copied to a buffer at byte offset ``shift``: unaligned when it is odd."""
    raw = np.zeros(values.nbytes + 16, dtype=np.uint8)
    raw[shift:shift + values.nbytes] = values.view(np.uint8)
    array = raw[shift:shift + values.nbytes].view(values.dtype) if shift % values.itemsize == 0 \
        else np.frombuffer(memoryview(raw)[shift:shift + values.nbytes], dtype=values.dtype)
    np.testing.assert_array_equal(array, values)
    return array


@pytest.mark.parametrize("dtype, huge", [(np.float32, 3e38), (np.float64, 1e300)])
@pytest.mark.parametrize("shift", [0, 1])
def test_finiteness_agrees_with_isfinite_for_any_values(dtype: type, huge: float,
                                                        shift: int) -> None:
    rng = np.random.default_rng(5)
    flags = np.empty(_FINITE_CHUNK, dtype=bool)
    specials = [np.nan, np.inf, -np.inf, huge, -huge, 0.0, -0.0, np.finfo(dtype).tiny]
    for trial in range(60):
        values = rng.standard_normal(SIZE).astype(dtype)
        # a few special values at random places: a finite array of huge values squares past
        # the dtype's range, which must not make it count as NaN or Inf
        for where in rng.integers(0, SIZE, size=trial % 4):
            values[where] = specials[int(rng.integers(0, len(specials)))]
        array = _placed(values, shift)
        assert array.flags.aligned == (shift == 0)
        assert _all_finite(array, flags) == bool(np.isfinite(values).all()), trial


@pytest.mark.parametrize("dtype, huge", [(np.float32, 3e38), (np.float64, 1e300)])
def test_huge_finite_values_pass(dtype: type, huge: float) -> None:
    update = np.full(SIZE, huge, dtype=dtype)
    update[::2] *= -1
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.dot(update, update))  # the quick sum overflows here
    arrays = check_fit_res("c", _res(update), None)
    np.testing.assert_array_equal(arrays[0], update)
