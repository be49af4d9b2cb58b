"""q-FedAvg: fair federated learning by q-FFL (Li et al., 2020)."""

from __future__ import annotations

from typing import Unpack

from fedsilo.common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from fedsilo.common.typing import FitIns, FitRes, Parameters, Scalar
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.client_proxy import ClientProxy
from fedsilo.server.strategy.aggregate import aggregate_qffl, qffl_client_step
from fedsilo.server.strategy.fedavg import FedAvg, FedAvgOptions

__all__ = ["QFedAvg"]


class QFedAvg(FedAvg):
    """Weights clients by their loss raised to ``q_param``, so worse-served clients pull
    harder; ``q = 0`` approaches FedAvg.

    Each client's loss ``F_k`` at the round's global model comes from the server's
    ``evaluate_fn`` when there is one (the same loss for every client, as Flower does), or
    else from the ``"loss"`` fit metric each client reports. Does not stream.
    """

    def __init__(
        self,
        *,
        q_param: float = 0.2,
        qffl_learning_rate: float = 0.1,
        **kwargs: Unpack[FedAvgOptions],
    ) -> None:
        kwargs.setdefault("min_fit_clients", 1)
        kwargs.setdefault("min_evaluate_clients", 1)
        kwargs.setdefault("min_available_clients", 1)
        super().__init__(**kwargs)
        self.q_param = q_param
        self.qffl_learning_rate = qffl_learning_rate
        self.pre_weights_: Parameters | None = None

    def __repr__(self) -> str:
        return f"QFedAvg(q_param={self.q_param}, qffl_learning_rate={self.qffl_learning_rate})"

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        self.pre_weights_ = parameters
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        if not self.accepts_round(results, failures):
            return None, {}
        if self.pre_weights_ is None:
            raise ValueError("QFedAvg.aggregate_fit needs configure_fit of the same round first")
        losses = self._client_losses(server_round, results)
        before = parameters_to_ndarrays(self.pre_weights_)
        steps = [qffl_client_step(before, parameters_to_ndarrays(res.parameters), loss,
                                  self.q_param, self.qffl_learning_rate)
                 for (_, res), loss in zip(results, losses, strict=True)]
        new = aggregate_qffl(before, [delta for delta, _ in steps], [h for _, h in steps])
        return ndarrays_to_parameters(new), self.aggregate_metrics_fit(results)

    def _client_losses(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]]
    ) -> list[float]:
        assert self.pre_weights_ is not None
        evaluated = self.evaluate(server_round, self.pre_weights_)
        if evaluated is not None:
            return [float(evaluated[0])] * len(results)
        missing = [proxy.cid for proxy, res in results
                   if not isinstance(res.metrics.get("loss"), int | float)]
        if missing:
            raise ValueError(
                "QFedAvg needs each client's loss: give the strategy an evaluate_fn, or have "
                f"clients report a numeric 'loss' fit metric (missing from {missing})")
        return [float(res.metrics["loss"]) for _, res in results]  # type: ignore[arg-type]
