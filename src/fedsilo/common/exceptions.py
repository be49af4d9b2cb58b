"""fedsilo's exceptions, one hierarchy.

    FedsiloError
    ├── SerializationError (ValueError)      tensor bytes that are not a plain .npy array
    ├── ProtocolError (ValueError)           a message that breaks the protocol
    ├── ClientReturnError (TypeError)        a client method returned the wrong shape
    ├── CheckpointError (ValueError)         a round checkpoint that cannot be written or read
    └── ClientFailure                        a client's reply was refused or never came
        ├── ClientTimeout (TimeoutError)
        ├── ClientDisconnected (ConnectionError)
        ├── ClientReportedError              the client answered with a non-OK status
        └── InvalidUpdate (ValueError)       shapes, dtypes or values that cannot be aggregated

Each subclasses the builtin its callers already catch. Failures reach strategies
as data (instances in the ``failures`` list), never as raised exceptions.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ClientDisconnected",
    "ClientFailure",
    "ClientReportedError",
    "ClientReturnError",
    "ClientTimeout",
    "FedsiloError",
    "InvalidUpdate",
    "ProtocolError",
    "SerializationError",
]


class FedsiloError(Exception):
    """Base class of every error fedsilo raises on purpose."""


class SerializationError(FedsiloError, ValueError):
    """Bytes that do not decode to a plain numeric ndarray (or an array that can't be encoded)."""


class ProtocolError(FedsiloError, ValueError):
    """A message that is malformed or arrives where the protocol does not allow it."""


class ClientReturnError(FedsiloError, TypeError):
    """A client method returned a value of the wrong shape; the message shows a correct one."""


class CheckpointError(FedsiloError, ValueError):
    """A checkpoint that cannot be written (state that is not arrays or JSON) or read back."""


class ClientFailure(FedsiloError):
    """A client's reply to one instruction was refused or missing.

    ``cid`` names the client, ``reason`` says why in words a person can act on.
    """

    def __init__(self, cid: str, reason: str) -> None:
        super().__init__(f"client {cid}: {reason}")
        self.cid = cid
        self.reason = reason


class ClientTimeout(ClientFailure, TimeoutError):
    """The client did not answer within the round timeout."""


class ClientDisconnected(ClientFailure, ConnectionError):
    """The client's stream closed before it answered."""


class ClientReportedError(ClientFailure):
    """The client answered with a non-OK status (its error text is the reason)."""


class InvalidUpdate(ClientFailure, ValueError):
    """The client's result cannot be aggregated (shape, dtype, NaN/Inf, counts)."""
