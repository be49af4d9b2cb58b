"""The three record types a ``RecordDict`` holds: arrays, metrics and configuration.

Each is a dict that checks every key and value as it is set, so a value that
could not travel is refused where it is written, with the ``TypeError`` Flower raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar

import numpy as np

from fedsilo.app._array import Array
from fedsilo.common.typing import NDArray, NDArrays

__all__ = [
    "ArrayRecord",
    "ConfigRecord",
    "ConfigRecordValues",
    "MetricRecord",
    "MetricRecordValues",
]

MetricScalar = int | float
MetricRecordValues = int | float | list[int] | list[float]
ConfigScalar = int | float | str | bytes | bool
ConfigRecordValues = (
    int | float | str | bytes | bool
    | list[int] | list[float] | list[str] | list[bytes] | list[bool]
)

V = TypeVar("V")


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"Key must be of type `str` but `{type(key)}` was passed.")


class _CheckedDict(MutableMapping[str, V]):
    """A dict whose keys are str and whose values pass ``_check_value`` when set."""

    def __init__(self) -> None:
        self._data: dict[str, V] = {}

    def _check_value(self, value: object) -> None:
        raise NotImplementedError

    def _fill(self, values: Mapping[str, V] | None, keep_input: bool) -> None:
        if not values:
            return
        for key in list(values):
            self[key] = values[key]
            if not keep_input:
                del values[key]  # type: ignore[attr-defined]

    def __setitem__(self, key: str, value: V) -> None:
        _check_key(key)
        self._check_value(value)
        self._data[key] = value

    def __getitem__(self, key: str) -> V:
        return self._data[key]

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _CheckedDict):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


def _scalar_checker(kinds: tuple[type, ...], allow_bool: bool, expected: str,
                    scalars: str) -> Callable[[object], None]:
    """A value check for scalars of ``kinds`` and homogeneous lists of them."""

    def check_scalar(value: object) -> None:
        if not isinstance(value, kinds) or (isinstance(value, bool) and not allow_bool):
            raise TypeError("Not all values are of valid type."
                            f" Expected `{expected}` but `{type(value)}` was passed.")

    def check(value: object) -> None:
        if not isinstance(value, list):
            check_scalar(value)
            return
        if value:  # an empty list is valid
            check_scalar(value[0])
            first = type(value[0])
            if not all(isinstance(v, first) for v in value):
                raise TypeError("All values in a list must be of the same valid type. "
                                f"One of {scalars}.")

    return check


_check_metric = _scalar_checker((int, float), False, "int | float | list[int] | list[float]",
                                "int | float")
_check_config = _scalar_checker(
    (int, float, str, bytes, bool), True,
    "int | float | str | bytes | bool | list[int] | list[float] | list[str] | list[bytes] "
    "| list[bool]", "int | float | str | bytes | bool")


class MetricRecord(_CheckedDict[MetricRecordValues]):
    """Metrics: str keys, values int, float or a list of one of them (no bool).

    Parameters
    ----------
    metric_dict:
        Initial metrics.
    keep_input:
        False empties ``metric_dict`` as its items are moved in.
    """

    def __init__(self, metric_dict: dict[str, MetricRecordValues] | None = None,
                 keep_input: bool = True) -> None:
        super().__init__()
        self._fill(metric_dict, keep_input)

    def _check_value(self, value: object) -> None:
        _check_metric(value)

    def count_bytes(self) -> int:
        """Bytes of the values (8 per number) and of the keys."""
        return sum(len(k) + 8 * (len(v) if isinstance(v, list) else 1)
                   for k, v in self.items())


class ConfigRecord(_CheckedDict[ConfigRecordValues]):
    """Configuration: str keys, values int, float, str, bytes, bool or a list of one of them.

    Parameters
    ----------
    config_dict:
        Initial values.
    keep_input:
        False empties ``config_dict`` as its items are moved in.
    """

    def __init__(self, config_dict: dict[str, ConfigRecordValues] | None = None,
                 keep_input: bool = True) -> None:
        super().__init__()
        self._fill(config_dict, keep_input)

    def _check_value(self, value: object) -> None:
        _check_config(value)

    def count_bytes(self) -> int:
        """Bytes of the values (bool 1, numbers 8, str and bytes their length) and keys."""
        def size(v: object) -> int:
            if isinstance(v, bool):
                return 1
            if isinstance(v, str | bytes):
                return len(v)
            return 8
        return sum(len(k) + (sum(size(x) for x in v) if isinstance(v, list) else size(v))
                   for k, v in self.items())


_ARRAY_RECORD_USAGE = ("Invalid arguments for ArrayRecord. Expected either a list of NumPy "
                       "ndarrays or a dictionary of Arrays. The `keep_input` argument is "
                       "keyword-only.")


class ArrayRecord(_CheckedDict[Array]):
    """Named tensors: str keys, ``Array`` values, in insertion order.

    Build it from a dict of ``Array`` or from a list of ndarrays (keys ``"0"``, ``"1"``, ...).

    Parameters
    ----------
    array_dict:
        A mapping of names to ``Array``, or a list of numpy arrays.
    keep_input:
        False empties the given dict or list as its items are moved in.
    """

    def __init__(self, array_dict: Mapping[str, Array] | list[NDArray] | None = None, *,
                 keep_input: bool = True, **kwargs: Any) -> None:
        super().__init__()
        if "numpy_ndarrays" in kwargs:  # Flower's keyword for the list form
            if array_dict is not None:
                raise TypeError("ArrayRecord takes one input, got two")
            array_dict = kwargs.pop("numpy_ndarrays")
        if kwargs:
            raise TypeError(f"ArrayRecord got unexpected keyword arguments {sorted(kwargs)}")
        if isinstance(array_dict, list):
            self._fill_from_ndarrays(array_dict, keep_input)
        elif array_dict is not None:
            if not isinstance(array_dict, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, Array) for k, v in array_dict.items()):
                raise TypeError(_ARRAY_RECORD_USAGE)
            self._fill(array_dict, keep_input)

    def _fill_from_ndarrays(self, ndarrays: list[NDArray], keep_input: bool) -> None:
        if not all(isinstance(ndarray, np.ndarray) for ndarray in ndarrays):
            raise TypeError(_ARRAY_RECORD_USAGE)
        for index, ndarray in enumerate(list(ndarrays)):
            self[str(index)] = Array(ndarray)
        if not keep_input:
            ndarrays.clear()

    def _check_value(self, value: object) -> None:
        if not isinstance(value, Array):
            raise TypeError(f"Value must be of type `{Array}` but `{type(value)}` was passed.")

    @classmethod
    def from_numpy_ndarrays(cls, ndarrays: NDArrays, keep_input: bool = True) -> ArrayRecord:
        """An ArrayRecord of ``ndarrays`` under keys ``"0"``, ``"1"``, ..."""
        return cls(ndarrays, keep_input=keep_input)

    def to_numpy_ndarrays(self, *, keep_input: bool = True) -> NDArrays:
        """The tensors as ndarrays the caller owns, in the record's order.

        Code written for Flower modifies these in place (``np.load`` copies), so each is
        copied once out of the message bytes; ``Array.numpy()`` gives read-only views
        without a copy.
        """
        arrays = [_writable(array.numpy()) for array in self.values()]
        if not keep_input:
            self.clear()
        return arrays

    def count_bytes(self) -> int:
        """Bytes of the tensors' data and of the keys."""
        return sum(len(k) + len(v.data) for k, v in self.items())


def _writable(array: NDArray) -> NDArray:
    return array if array.flags.writeable else np.array(array, copy=True)
