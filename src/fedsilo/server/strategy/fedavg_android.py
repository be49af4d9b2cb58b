"""FedAvgAndroid: FedAvg for Flower's Android clients, whose tensors are raw float32 bytes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedsilo.common.parameter import ANDROID_TENSOR_TYPE
from fedsilo.common.typing import FitRes, NDArray, NDArrays, Parameters, Scalar
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.fedavg import EvaluateFn, FedAvg

__all__ = ["FedAvgAndroid"]


class FedAvgAndroid(FedAvg):
    """Federated Averaging with the tensor format of Flower's Android (Java/Kotlin) clients.

    Each tensor travels as its raw float32 bytes (``ndarray.tobytes()``, tensor type
    ``numpy.nda``), without the ``.npy`` header, so every layer is read back 1-D. The
    server sends the global model in that format and reads the clients' models from it;
    the example-weighted mean is FedAvg's, and it streams as FedAvg does. Fit and evaluate
    metrics are not aggregated (Flower's FedAvgAndroid takes no aggregation functions).

    Parameters
    ----------
    fraction_fit, fraction_evaluate, min_fit_clients, min_evaluate_clients,
    min_available_clients, evaluate_fn, on_fit_config_fn, on_evaluate_config_fn,
    accept_failures, initial_parameters
        As for :class:`FedAvg`; ``initial_parameters`` in the Android format
        (:meth:`ndarrays_to_parameters`).
    """

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | None = None,
    ) -> None:
        super().__init__(
            fraction_fit=fraction_fit, fraction_evaluate=fraction_evaluate,
            min_fit_clients=min_fit_clients, min_evaluate_clients=min_evaluate_clients,
            min_available_clients=min_available_clients, evaluate_fn=evaluate_fn,
            on_fit_config_fn=on_fit_config_fn, on_evaluate_config_fn=on_evaluate_config_fn,
            accept_failures=accept_failures, initial_parameters=initial_parameters)

    def __repr__(self) -> str:
        return f"FedAvg(accept_failures={self.accept_failures})"

    def conclude_fit(
        self, server_round: int, aggregate: NDArrays, results: list[tuple[ClientProxy, FitRes]]
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        return self.ndarrays_to_parameters(aggregate), {}

    def ndarrays_to_parameters(self, ndarrays: NDArrays) -> Parameters:
        """Arrays to Parameters in the Android format."""
        return Parameters(tensors=[self.ndarray_to_bytes(a) for a in ndarrays],
                          tensor_type=ANDROID_TENSOR_TYPE)

    def parameters_to_ndarrays(self, parameters: Parameters) -> NDArrays:
        """Parameters in the Android format to 1-D float32 arrays."""
        return [self.bytes_to_ndarray(tensor) for tensor in parameters.tensors]

    def ndarray_to_bytes(self, ndarray: NDArray) -> bytes:
        """The array's float32 values as raw bytes."""
        return np.asarray(ndarray, dtype=np.float32).tobytes()

    def bytes_to_ndarray(self, tensor: bytes) -> NDArray:
        """Raw float32 bytes to a 1-D array (a view of ``tensor``)."""
        return np.frombuffer(tensor, dtype=np.float32)
