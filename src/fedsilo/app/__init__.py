"""The app API: records, messages and the context that ClientApps and ServerApps use.

Flower's ``flwr.app`` names, with Flower's checks: an app written for Flower runs with
``flwr.app`` changed to ``fedsilo.app``. Tensors are ``.npy`` bytes (never pickled) and
are decoded without copying.
"""

from __future__ import annotations

from fedsilo.app._array import Array
from fedsilo.app._context import Context, UserConfig, UserConfigValue
from fedsilo.app._message import (
    DEFAULT_TTL,
    Error,
    ErrorCode,
    Message,
    MessageInitializationError,
    MessageType,
    Metadata,
)
from fedsilo.app._recorddict import RecordDict
from fedsilo.app._records import (
    ArrayRecord,
    ConfigRecord,
    ConfigRecordValues,
    MetricRecord,
    MetricRecordValues,
)

__all__ = [
    "DEFAULT_TTL",
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "ConfigRecordValues",
    "Context",
    "Error",
    "ErrorCode",
    "Message",
    "MessageInitializationError",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "MetricRecordValues",
    "RecordDict",
    "UserConfig",
    "UserConfigValue",
]
