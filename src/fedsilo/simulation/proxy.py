"""A proxy whose four client calls go through one ``_call``: the shape of every local proxy."""

from __future__ import annotations

from abc import abstractmethod
from typing import TypeVar

from fedsilo.common.serde import ServerInstruction
from fedsilo.common.typing import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
)
from fedsilo.server.client_proxy import ClientProxy

__all__ = ["DispatchingClientProxy"]

T = TypeVar("T")


class DispatchingClientProxy(ClientProxy):
    """Routes get_properties, get_parameters, fit and evaluate to ``_call``."""

    @abstractmethod
    def _call(self, ins: ServerInstruction, expected: type[T], timeout: float | None) -> T:
        """Run ``ins`` on the client; return its reply of type ``expected`` or raise a
        ``ClientFailure``."""

    def get_properties(
        self, ins: GetPropertiesIns, timeout: float | None, group_id: int | None = None
    ) -> GetPropertiesRes:
        return self._call(ins, GetPropertiesRes, timeout)

    def get_parameters(
        self, ins: GetParametersIns, timeout: float | None, group_id: int | None = None
    ) -> GetParametersRes:
        return self._call(ins, GetParametersRes, timeout)

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None = None) -> FitRes:
        return self._call(ins, FitRes, timeout)

    def evaluate(
        self, ins: EvaluateIns, timeout: float | None, group_id: int | None = None
    ) -> EvaluateRes:
        return self._call(ins, EvaluateRes, timeout)
