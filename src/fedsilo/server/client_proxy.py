"""The server's handle on one client, whatever carries the messages."""

from __future__ import annotations

from abc import ABC, abstractmethod

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

__all__ = ["ClientProxy"]


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

    def release_reply(self) -> None:  # noqa: B027 - optional for transports, not abstract
        """The caller is done with the reply ``fit`` returned last (folded or kept it).

        A transport that reads large replies a few at a time lets the next one in;
        the default does nothing.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cid={self.cid!r})"
