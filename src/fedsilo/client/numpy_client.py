"""``NumPyClient``: the convenient client interface, on lists of numpy arrays.

Return values are checked where they come back from user code; a wrong shape
raises ``ClientReturnError`` with an example of a correct return.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from fedsilo.client.client import Client
from fedsilo.common.exceptions import ClientReturnError
from fedsilo.common.parameter import parameters_to_ndarrays, reply_parameters
from fedsilo.common.typing import (
    Code,
    Config,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    NDArrays,
    Parameters,
    Scalar,
    Status,
)

__all__ = ["NumPyClient"]

_FIT_EXAMPLE = """fit must return a tuple (NDArrays, int, dict), for example:

    def fit(self, parameters, config):
        ...
        return [np.array([1.0, 2.0]), np.array([0.5])], 120, {"loss": 0.31}
"""

_EVALUATE_EXAMPLE = """evaluate must return a tuple (float, int, dict), for example:

    def evaluate(self, parameters, config):
        ...
        return 0.42, 120, {"accuracy": 0.87}
"""

_GET_PARAMETERS_EXAMPLE = """get_parameters must return a list of numpy arrays, for example:

    def get_parameters(self, config):
        return [np.zeros((3, 2)), np.zeros(2)]
"""


class NumPyClient:
    """A client whose parameters are lists of numpy arrays.

    Subclass it and override ``get_parameters``, ``fit`` and ``evaluate``
    (and ``get_properties`` if the server asks for properties).
    """

    def get_properties(self, config: Config) -> dict[str, Scalar]:
        """Return the client's properties; the default has none."""
        return {}

    def get_parameters(self, config: Config) -> NDArrays:
        """Return the current local model parameters."""
        raise NotImplementedError("get_parameters is not implemented")

    def fit(
        self, parameters: NDArrays, config: Config
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train from ``parameters`` on local data; return parameters, example count, metrics."""
        raise NotImplementedError("fit is not implemented")

    def evaluate(
        self, parameters: NDArrays, config: Config
    ) -> tuple[float, int, dict[str, Scalar]]:
        """Evaluate ``parameters`` on local data; return loss, example count, metrics."""
        raise NotImplementedError("evaluate is not implemented")

    def to_client(self) -> Client:
        """Wrap this client in the low-level ``Client`` interface."""
        return _NumPyClientAdapter(self)


def _check_ndarrays(value: Any, example: str) -> NDArrays:
    if not isinstance(value, list | tuple) or not all(isinstance(a, np.ndarray) for a in value):
        raise ClientReturnError(f"got {_describe(value)} where a list of numpy arrays belongs; "
                                + example)
    return list(value)


def _check_count(value: Any, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ClientReturnError(f"the example count must be an int, got {_describe(value)}; "
                                + example)
    return int(value)


def _check_metrics(value: Any, example: str) -> dict[str, Scalar]:
    if not isinstance(value, dict):
        raise ClientReturnError(f"metrics must be a dict, got {_describe(value)}; " + example)
    return value


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _overrides(client: NumPyClient, name: str) -> bool:
    return getattr(type(client), name) is not getattr(NumPyClient, name)


def _writable_ndarrays(parameters: Parameters) -> NDArrays:
    """Decode parameters into arrays the user's code owns and may modify in place.

    Decoding alone gives read-only views of the message buffer; NumPyClient code written for
    Flower expects writable arrays (``np.load`` copies), so each array is copied once here.
    Arrays that are writable already are views of a buffer this client alone holds (a model
    that arrived in chunk frames) and are handed over without a copy.
    """
    return [a if a.flags.writeable else np.array(a, copy=True)
            for a in parameters_to_ndarrays(parameters)]


class _NumPyClientAdapter(Client):
    """Presents a NumPyClient as a Client: decodes, calls, checks, encodes."""

    def __init__(self, numpy_client: NumPyClient) -> None:
        self.numpy_client = numpy_client

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        if not _overrides(self.numpy_client, "get_properties"):
            return super().get_properties(ins)
        properties = self.numpy_client.get_properties(ins.config)
        if not isinstance(properties, dict):
            raise ClientReturnError(
                f"get_properties must return a dict, got {_describe(properties)}; for example: "
                'return {"site": "north", "n_rows": 1200}'
            )
        return GetPropertiesRes(status=Status(Code.OK, "Success"), properties=properties)

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        if not _overrides(self.numpy_client, "get_parameters"):
            return super().get_parameters(ins)
        arrays = _check_ndarrays(self.numpy_client.get_parameters(ins.config),
                                 _GET_PARAMETERS_EXAMPLE)
        return GetParametersRes(status=Status(Code.OK, "Success"),
                                parameters=reply_parameters(arrays))

    def fit(self, ins: FitIns) -> FitRes:
        if not _overrides(self.numpy_client, "fit"):
            return super().fit(ins)
        result = self.numpy_client.fit(_writable_ndarrays(ins.parameters), ins.config)
        if not isinstance(result, tuple) or len(result) != 3:
            raise ClientReturnError(f"got {_describe(result)}; " + _FIT_EXAMPLE)
        arrays = _check_ndarrays(result[0], _FIT_EXAMPLE)
        num_examples = _check_count(result[1], _FIT_EXAMPLE)
        metrics = _check_metrics(result[2], _FIT_EXAMPLE)
        return FitRes(status=Status(Code.OK, "Success"),
                      parameters=reply_parameters(arrays),
                      num_examples=num_examples, metrics=metrics)

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        if not _overrides(self.numpy_client, "evaluate"):
            return super().evaluate(ins)
        result = self.numpy_client.evaluate(_writable_ndarrays(ins.parameters), ins.config)
        if not isinstance(result, tuple) or len(result) != 3:
            raise ClientReturnError(f"got {_describe(result)}; " + _EVALUATE_EXAMPLE)
        loss, num_examples, metrics = result
        if isinstance(loss, bool) or not isinstance(loss, numbers.Real):
            raise ClientReturnError(f"the loss must be a float, got {_describe(loss)}; "
                                    + _EVALUATE_EXAMPLE)
        return EvaluateRes(status=Status(Code.OK, "Success"), loss=float(loss),
                           num_examples=_check_count(num_examples, _EVALUATE_EXAMPLE),
                           metrics=_check_metrics(metrics, _EVALUATE_EXAMPLE))
