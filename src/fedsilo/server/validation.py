"""Checks a client's reply before it can reach a strategy.

A reply that fails a check becomes an ``InvalidUpdate`` failure with its
reason; it is never aggregated.
"""

from __future__ import annotations

import math

import numpy as np

from fedsilo.common.exceptions import InvalidUpdate, SerializationError
from fedsilo.common.parameter import parameters_to_ndarrays
from fedsilo.common.typing import EvaluateRes, FitRes, NDArrays

__all__ = ["MAX_NUM_EXAMPLES", "check_evaluate_res", "check_fit_res", "check_num_examples"]

MAX_NUM_EXAMPLES = 10**12  # beyond this an example count is not believable


def check_fit_res(
    cid: str, res: FitRes, reference: NDArrays | None, max_num_examples: int = MAX_NUM_EXAMPLES
) -> NDArrays:
    """Decode and check a training result; return its arrays or raise ``InvalidUpdate``."""
    check_num_examples(cid, res.num_examples, max_num_examples)
    try:
        arrays = parameters_to_ndarrays(res.parameters)
    except SerializationError as exc:
        raise InvalidUpdate(cid, f"parameters cannot be decoded: {exc}") from exc
    if reference is not None:
        if len(arrays) != len(reference):
            raise InvalidUpdate(
                cid, f"sent {len(arrays)} tensors, the global model has {len(reference)}")
        for index, (got, want) in enumerate(zip(arrays, reference, strict=True)):
            if got.shape != want.shape:
                raise InvalidUpdate(cid, f"tensor {index} has shape {got.shape}, "
                                         f"the global model's is {want.shape}")
            if got.dtype != want.dtype:
                raise InvalidUpdate(cid, f"tensor {index} has dtype {got.dtype}, "
                                         f"the global model's is {want.dtype}")
    flags = np.empty(_FINITE_CHUNK, dtype=bool)
    for index, array in enumerate(arrays):
        if array.dtype.kind in "fc" and not _all_finite(array, flags):
            raise InvalidUpdate(cid, f"tensor {index} holds NaN or Inf values")
        if array.dtype.kind not in "biufc":
            raise InvalidUpdate(cid, f"tensor {index} has non-numeric dtype {array.dtype}")
    return arrays


_FINITE_CHUNK = 1 << 16
"""Elements checked per step: the flags of a step stay in cache, and a model-sized
temporary (10 MB of flags at 10M parameters, mapped page by page for every reply) is
never allocated."""


_DOT_DTYPES = frozenset({np.dtype(np.float32), np.dtype(np.float64)})
_DOT_FROM = 1 << 14
"""Elements from which the dot product is tried first: on 2 cores it took 11 us against
isfinite's 19 us at 100k float32 elements and 98 us against 204-255 us at 1M, but a
tensor of 10 elements took 5.5-7.6 us against 3.3 us."""


def _all_finite(array: np.ndarray, flags: np.ndarray) -> bool:
    """Whether every element of ``array`` is finite, using ``flags`` as scratch.

    A large aligned float32 or float64 array is first summed as its dot product with itself
    (one BLAS pass, no flags written): a NaN or an infinity anywhere makes that sum NaN or
    infinite, so a finite sum proves every element finite. Only a sum that is not finite
    (a bad element, or squares too large for the dtype) is settled element by element.
    """
    flat = array.reshape(-1)
    if (flat.size >= _DOT_FROM and flat.dtype in _DOT_DTYPES and flat.flags.aligned
            and flat.flags.c_contiguous):
        with np.errstate(over="ignore", invalid="ignore"):
            if math.isfinite(np.dot(flat, flat)):
                return True
    for start in range(0, flat.size, _FINITE_CHUNK):
        part = flat[start:start + _FINITE_CHUNK]
        step = flags[:part.size]
        np.isfinite(part, out=step)
        if not step.all():
            return False
    return True


def check_evaluate_res(
    cid: str, res: EvaluateRes, max_num_examples: int = MAX_NUM_EXAMPLES
) -> None:
    """Check an evaluation result or raise ``InvalidUpdate``."""
    check_num_examples(cid, res.num_examples, max_num_examples)
    if not math.isfinite(res.loss):
        raise InvalidUpdate(cid, f"loss is {res.loss}")


def check_num_examples(cid: str, num_examples: int, max_num_examples: int) -> None:
    if num_examples < 0:
        raise InvalidUpdate(cid, f"num_examples is negative ({num_examples})")
    if num_examples > max_num_examples:
        raise InvalidUpdate(
            cid, f"num_examples {num_examples} exceeds the server's limit of {max_num_examples}")
