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
                 shape: tuple[int, ...] | list[int] | None = None, stype: str | None = None,
                 data: bytes | None = None, ndarray: NDArray | None = None) -> None:
        fields = {"dtype": dtype, "shape": shape, "stype": stype, "data": data}
        given = {k: v for k, v in fields.items() if v is not None}
        if len(args) == 1 and not given and ndarray is None and isinstance(args[0], np.ndarray):
            ndarray = args[0]
        elif args:
            if len(args) > len(_FIELDS) or ndarray is not None:
                raise TypeError(_USAGE)
            for name, value in zip(_FIELDS, args, strict=False):
                if name in given:
                    raise TypeError(f"Array got two values for {name!r}. {_USAGE}")
                given[name] = value
        if ndarray is not None:
            if given:
                raise TypeError(f"Array takes an ndarray or the four fields, not both. {_USAGE}")
            if not isinstance(ndarray, np.ndarray):
                raise TypeError(f"ndarray must be a numpy.ndarray, got {type(ndarray).__name__}")
            self.dtype = str(ndarray.dtype)
            self.shape = tuple(int(n) for n in ndarray.shape)
            self.stype = NUMPY_STYPE
            self.data = ndarray_to_bytes(ndarray)
            return
        if set(given) != set(_FIELDS):
            raise TypeError(_USAGE)
        if not isinstance(given["data"], bytes | bytearray | memoryview):
            raise TypeError(f"Array data must be bytes, got {type(given['data']).__name__}")
        self.dtype = str(given["dtype"])
        self.shape = tuple(int(n) for n in given["shape"])
        self.stype = str(given["stype"])
        self.data = given["data"]

    def numpy(self) -> NDArray:
        """The tensor as a read-only ndarray sharing memory with ``data``."""
        if self.stype != NUMPY_STYPE:
            raise TypeError(
                f"Unsupported serialization type for numpy conversion: '{self.stype}'")
        return bytes_to_ndarray(self.data)

    def __repr__(self) -> str:
        return (f"Array(dtype={self.dtype!r}, shape={self.shape}, stype={self.stype!r}, "
                f"data=<{len(self.data)} bytes>)")


_USAGE = ("Build an Array from a numpy array (Array(arr) or Array(ndarray=arr)) or from "
          "dtype, shape, stype and data (positionally or by name).")
