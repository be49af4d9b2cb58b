"""Message types exchanged between the server, strategies and clients.

Plain dataclasses: protobuf never reaches user code. The names and fields are
Flower's, so code written against Flower 1.x type-checks and runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

NDArray = npt.NDArray[Any]
NDArrayInt = npt.NDArray[np.int_]
NDArrayFloat = npt.NDArray[np.float64]
NDArrays = list[NDArray]

Scalar = bool | bytes | float | int | str
Value = (
    bool | bytes | float | int | str
    | list[bool] | list[bytes] | list[float] | list[int] | list[str]
)

Metrics = dict[str, Scalar]
MetricsAggregationFn = Callable[[list[tuple[int, Metrics]]], Metrics]
Config = dict[str, Scalar]
Properties = dict[str, Scalar]

__all__ = [
    "ClientMessage",
    "Code",
    "Config",
    "DisconnectRes",
    "EvaluateIns",
    "EvaluateRes",
    "FitIns",
    "FitRes",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "Metrics",
    "MetricsAggregationFn",
    "NDArray",
    "NDArrayFloat",
    "NDArrayInt",
    "NDArrays",
    "Parameters",
    "Properties",
    "ReconnectIns",
    "Scalar",
    "ServerMessage",
    "Status",
    "Value",
]


class Code(Enum):
    """Outcome of a client-side operation."""

    OK = 0
    GET_PROPERTIES_NOT_IMPLEMENTED = 1
    GET_PARAMETERS_NOT_IMPLEMENTED = 2
    FIT_NOT_IMPLEMENTED = 3
    EVALUATE_NOT_IMPLEMENTED = 4


@dataclass
class Status:
    """Client status: a code and a human-readable message."""

    code: Code
    message: str


@dataclass
class Parameters:
    """Model parameters as serialized tensors."""

    tensors: list[bytes]
    tensor_type: str


@dataclass
class GetParametersIns:
    """Ask a client for its current parameters."""

    config: Config


@dataclass
class GetParametersRes:
    """A client's current parameters."""

    status: Status
    parameters: Parameters


@dataclass
class FitIns:
    """Train on local data, starting from these parameters."""

    parameters: Parameters
    config: Config


@dataclass
class FitRes:
    """Locally trained parameters and how many examples produced them."""

    status: Status
    parameters: Parameters
    num_examples: int
    metrics: Metrics


@dataclass
class EvaluateIns:
    """Evaluate these parameters on local data."""

    parameters: Parameters
    config: Config


@dataclass
class EvaluateRes:
    """Loss and metrics of an evaluation on local data."""

    status: Status
    loss: float
    num_examples: int
    metrics: Metrics


@dataclass
class GetPropertiesIns:
    """Ask a client for its properties."""

    config: Config


@dataclass
class GetPropertiesRes:
    """A client's properties."""

    status: Status
    properties: Properties


@dataclass
class ReconnectIns:
    """Ask a client to disconnect and reconnect after ``seconds`` (None: don't)."""

    seconds: int | None


@dataclass
class DisconnectRes:
    """A client's acknowledgement of a disconnect."""

    reason: str


@dataclass
class ServerMessage:
    """One instruction from the server: at most one field is set (Flower's legacy type)."""

    get_properties_ins: GetPropertiesIns | None = None
    get_parameters_ins: GetParametersIns | None = None
    fit_ins: FitIns | None = None
    evaluate_ins: EvaluateIns | None = None


@dataclass
class ClientMessage:
    """One reply from a client: at most one field is set (Flower's legacy type)."""

    get_properties_res: GetPropertiesRes | None = None
    get_parameters_res: GetParametersRes | None = None
    fit_res: FitRes | None = None
    evaluate_res: EvaluateRes | None = None
