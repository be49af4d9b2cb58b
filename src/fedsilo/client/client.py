"""The low-level client interface: methods take and return message dataclasses."""

from __future__ import annotations

from fedsilo.common.typing import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Parameters,
    Status,
)

__all__ = ["Client"]


class Client:
    """A federated client working on serialized ``Parameters``.

    Override the methods the client supports; the defaults answer with a
    NOT_IMPLEMENTED status, which the server records as a failure.
    """

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        return GetPropertiesRes(
            status=Status(Code.GET_PROPERTIES_NOT_IMPLEMENTED, "get_properties is not implemented"),
            properties={},
        )

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        return GetParametersRes(
            status=Status(Code.GET_PARAMETERS_NOT_IMPLEMENTED, "get_parameters is not implemented"),
            parameters=Parameters(tensors=[], tensor_type=""),
        )

    def fit(self, ins: FitIns) -> FitRes:
        return FitRes(
            status=Status(Code.FIT_NOT_IMPLEMENTED, "fit is not implemented"),
            parameters=Parameters(tensors=[], tensor_type=""),
            num_examples=0,
            metrics={},
        )

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        return EvaluateRes(
            status=Status(Code.EVALUATE_NOT_IMPLEMENTED, "evaluate is not implemented"),
            loss=0.0,
            num_examples=0,
            metrics={},
        )

    def to_client(self) -> Client:
        return self
