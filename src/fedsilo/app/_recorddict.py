"""``RecordDict``: a message's content, a dict of named records of the three kinds."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Generic, TypeVar

from fedsilo.app._records import ArrayRecord, ConfigRecord, MetricRecord, _CheckedDict

__all__ = ["RecordDict", "RecordType"]

RecordType = ArrayRecord | MetricRecord | ConfigRecord
R = TypeVar("R", ArrayRecord, MetricRecord, ConfigRecord)


class RecordDict(_CheckedDict[RecordType]):
    """Records by name: each value an ``ArrayRecord``, a ``MetricRecord`` or a ``ConfigRecord``.

    Parameters
    ----------
    records:
        Initial records by name.
    """

    def __init__(self, records: Mapping[str, RecordType] | None = None) -> None:
        super().__init__()
        if records:
            for key, value in records.items():
                self[key] = value

    def __setitem__(self, key: str, value: RecordType) -> None:
        if not isinstance(key, str):
            raise TypeError(f"Expected `str`, but received `{type(key).__name__}` for the key.")
        super().__setitem__(key, value)

    def _check_value(self, value: object) -> None:
        if not isinstance(value, ArrayRecord | MetricRecord | ConfigRecord):
            raise TypeError("Expected `ArrayRecord`, `MetricRecord`, or `ConfigRecord` but "
                            f"received `{type(value).__name__}` for the value.")

    @property
    def array_records(self) -> _RecordView[ArrayRecord]:
        """The ArrayRecords, by name: a live view; setting into it sets here."""
        return _RecordView(self, ArrayRecord)

    @property
    def metric_records(self) -> _RecordView[MetricRecord]:
        """The MetricRecords, by name (a live view)."""
        return _RecordView(self, MetricRecord)

    @property
    def config_records(self) -> _RecordView[ConfigRecord]:
        """The ConfigRecords, by name (a live view)."""
        return _RecordView(self, ConfigRecord)

    def count_bytes(self) -> int:
        """Bytes of every record and of the names."""
        return sum(len(k) + v.count_bytes() for k, v in self.items())


class _RecordView(MutableMapping[str, R], Generic[R]):
    """The records of one kind in a RecordDict; writes go to the RecordDict."""

    def __init__(self, records: RecordDict, kind: type[R]) -> None:
        self._records = records
        self._kind: type[R] = kind

    def __getitem__(self, key: str) -> R:
        value = self._records[key]
        if not isinstance(value, self._kind):
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: R) -> None:
        if not isinstance(value, self._kind):
            raise TypeError(f"Expected `{self._kind.__name__}`, but received "
                            f"`{type(value).__name__}` for the value.")
        self._records[key] = value

    def __delitem__(self, key: str) -> None:
        self[key]  # noqa: B018 - only a record of this kind may be deleted through the view
        del self._records[key]

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, v in self._records.items() if isinstance(v, self._kind)])

    def __len__(self) -> int:
        return sum(1 for v in self._records.values() if isinstance(v, self._kind))

    def __repr__(self) -> str:
        return repr(dict(self))
