"""``Array``: one tensor as ``.npy`` bytes with its dtype and shape beside them.

The bytes are what travels: a fedsilo peer sends them as they are, and ``numpy()``
decodes them without copying the data. Nothing here ever pickles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.common.parameter import bytes_to_ndarray, ndarray_to_bytes
from fedsilo.common.typing import NDArray

__all__ = ["NUMPY_STYPE", "Array"]

NUMPY_STYPE = "numpy.ndarray"
"""The serialization type of ``.npy`` bytes, as Flower names it."""

_FIELDS = ("dtype", "shape", "stype", "data")


@dataclass(init=False)
class Array:
    """A tensor: ``dtype``, ``shape``, serialization type ``stype`` and the ``data`` bytes.

    Build it from an ndarray (``Array(arr)`` or ``Array(ndarray=arr)``) or from its four
    fields, positionally or by name (``Array(dtype, shape, stype, data)``), as Flower does.

    Parameters
    ----------
    dtype, shape, stype, data:
        The fields of an already serialized tensor.
    ndarray:
        A numpy array to serialize (``.npy`` bytes, never pickled).
    """

    dtype: str
    shape: tuple[int, ...]
    stype: str
    data: bytes

    def __init__(self, *args: Any, dtype: str | None = None,
                 shape: tuple[int, ...] | None = None, stype: str | None = None,
                 data: bytes | None = None, ndarray: NDArray | None = None) -> None:
        if len(args) > len(_FIELDS):
            raise TypeError(_USAGE)
        fields: list[Any] = list(args) + [None] * (len(_FIELDS) - len(args))
        method = None
        for index, (value, kind) in enumerate(((dtype, "fields"), (shape, "fields"),
                                               (stype, "fields"), (data, "fields"),
                                               (ndarray, "ndarray"))):
            if value is None:
                continue
            index = min(index, 3) if kind == "fields" else 0
            if fields[index] is not None or (method is not None and method != kind):
                raise TypeError(_USAGE)
            method, fields[index] = kind, value
        given = [f for f in fields if f is not None]
        if method in (None, "fields") and len(given) == 4 and isinstance(given[0], str) \
                and isinstance(given[1], tuple) and all(isinstance(n, int) for n in given[1]) \
                and isinstance(given[2], str) and isinstance(given[3], bytes):
            self.dtype, self.shape, self.stype, self.data = given
            return
        if method in (None, "ndarray") and len(given) == 1 and isinstance(given[0], np.ndarray):
            array = given[0]
            self.dtype = str(array.dtype)
            self.shape = tuple(int(n) for n in array.shape)
            self.stype = NUMPY_STYPE
            self.data = ndarray_to_bytes(array)
            return
        raise TypeError(_USAGE)

    @classmethod
    def from_npy(cls, dtype: str, shape: tuple[int, ...], data: bytes | memoryview) -> Array:
        """An Array over ``.npy`` bytes already read, without copying them (a received
        tensor may be a view of its message's buffer)."""
        array = cls.__new__(cls)
        array.dtype, array.shape, array.stype = dtype, shape, NUMPY_STYPE
        array.data = data  # type: ignore[assignment]
        return array

    @classmethod
    def from_numpy_ndarray(cls, ndarray: NDArray) -> Array:
        """An Array holding ``ndarray`` as ``.npy`` bytes."""
        return cls(ndarray=ndarray)

    def numpy(self) -> NDArray:
        """The tensor as a read-only ndarray sharing memory with ``data``."""
        if self.stype != NUMPY_STYPE:
            raise TypeError(
                f"Unsupported serialization type for numpy conversion: '{self.stype}'")
        return bytes_to_ndarray(self.data)

    def __repr__(self) -> str:
        return (f"Array(dtype={self.dtype!r}, shape={self.shape}, stype={self.stype!r}, "
                f"data=<{len(self.data)} bytes>)")


_USAGE = ("Invalid arguments for Array. Expected either a NumPy ndarray or explicit "
          "dtype/shape/stype/data values (str, tuple of int, str, bytes).")
