"""A reply's tensors are checked for NaN and Inf wherever the bad value sits."""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo.common.exceptions import InvalidUpdate
from fedsilo.common.parameter import ndarrays_to_parameters
from fedsilo.common.typing import Code, FitRes, Status
from fedsilo.server.validation import _FINITE_CHUNK, check_fit_res


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
