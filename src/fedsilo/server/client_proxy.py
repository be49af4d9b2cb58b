"""The server's handle on one client, whatever carries the messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

from fedsilo.common.typing import (
    DisconnectRes,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    ReconnectIns,
)

__all__ = ["ClientProxy", "PendingReply"]

Instruction = GetPropertiesIns | GetParametersIns | FitIns | EvaluateIns | ReconnectIns


class PendingReply(Protocol):
    """An instruction sent by ``ClientProxy.submit`` whose reply is awaited."""

    def result(self) -> Any:
        """The reply, once ``notify`` was called; raises a ``ClientFailure`` subclass
        when the client did not answer or answered with something unusable."""

    def cancel(self) -> None:
        """Stop waiting: a reply that still comes is dropped."""


class ClientProxy(ABC):
    """One client as the round loop sees it.

    gRPC, in-process and simulated clients implement these five calls; each
    raises a ``ClientFailure`` subclass when the client does not answer.
    """

    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.properties: dict[str, object] = {}

    @abstractmethod
    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None = None
    ) -> GetPropertiesRes: ...

    @abstractmethod
    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None = None
    ) -> GetParametersRes: ...

    @abstractmethod
    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None = None) -> FitRes: ...

    @abstractmethod
    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None = None
    ) -> EvaluateRes: ...

    @abstractmethod
    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None = None
    ) -> DisconnectRes: ...

    def submit(self, ins: Instruction, notify: Callable[[], None]) -> PendingReply | None:
        """Send ``ins`` without waiting for the reply; ``notify()`` is called, from any
        thread, once ``result()`` of the returned handle no longer blocks.

        The round loop uses this to wait for many clients from one thread. The default
        returns None: the proxy has blocking calls only, and the round loop calls them
        from worker threads (the call's ``timeout`` then applies per client).
        """
        return None

    def release_reply(self) -> None:  # noqa: B027 - optional for transports, not abstract
        """The caller is done with the reply ``fit`` returned last (folded or kept it).

        A transport that reads large replies a few at a time lets the next one in;
        the default does nothing.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cid={self.cid!r})"
