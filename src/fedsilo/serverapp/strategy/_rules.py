"""Strategies that are FedAvg with another rule or a server optimizer step.

The rules and steps are the legacy strategies' functions in
``server/strategy/aggregate.py``, applied to the same arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from fedsilo.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from fedsilo.common.typing import NDArrays
from fedsilo.server.strategy.aggregate import (
    aggregate_median,
    aggregate_qffl,
    aggregate_trimmed_mean,
    fedadagrad_step,
    fedadam_step,
    fedavgm_step,
    fedyogi_step,
    krum_scores,
    mean_closest_to_median,
    pairwise_squared_distances,
    qffl_client_step,
)
from fedsilo.serverapp._grid import Grid
from fedsilo.serverapp.strategy._fedavg import FedAvg, _record

log = logging.getLogger("fedsilo.server")

__all__ = ["Bulyan", "FedAdagrad", "FedAdam", "FedAvgM", "FedMedian", "FedOpt", "FedProx",
           "FedTrimmedAvg", "FedYogi", "Krum", "MultiKrum", "QFedAvg"]


class FedProx(FedAvg):
    """FedAvg that sends ``proximal-mu`` in the train config; the nodes add the proximal
    term ``mu/2 ||w - w_global||^2`` to their local loss (Li et al., 2020).

    Parameters
    ----------
    proximal_mu:
        The proximal term's weight (0.0: plain FedAvg). FedAvg's parameters apply.
    """

    def __init__(self, *args: Any, proximal_mu: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proximal_mu = proximal_mu

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        config["proximal-mu"] = self.proximal_mu
        return super().configure_train(server_round, arrays, config, grid)


class FedMedian(FedAvg):
    """The coordinate-wise median of the nodes' arrays (Yin et al., 2018)."""

    streams = False

    def rule(self, results: list[tuple[NDArrays, int]]) -> NDArrays:
        return aggregate_median(results)


class FedTrimmedAvg(FedAvg):
    """The coordinate-wise mean after cutting the ``beta`` share of lowest and highest values.

    Parameters
    ----------
    beta:
        Share cut at each end, in [0, 0.5). FedAvg's parameters apply.
    """

    streams = False

    def __init__(self, *args: Any, beta: float = 0.2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.beta = beta

    def rule(self, results: list[tuple[NDArrays, int]]) -> NDArrays:
        return aggregate_trimmed_mean(results, self.beta)


class Krum(FedAvg):
    """The node model closest to its ``n - f - 2`` neighbours (Blanchard et al., 2017).

    Parameters
    ----------
    num_malicious_nodes:
        ``f``, the nodes assumed malicious. FedAvg's parameters apply.
    """

    streams = False

    def __init__(self, *args: Any, num_malicious_nodes: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_malicious_nodes = num_malicious_nodes

    num_selected = 1

    def select(self, results: list[tuple[NDArrays, int]]) -> list[int]:
        """The ``num_selected`` replies with the lowest Krum scores; their weighted mean is
        the aggregate and their metrics the round's metrics, as in Flower."""
        scores = krum_scores(pairwise_squared_distances([m for m, _ in results]),
                             self.num_malicious_nodes)
        return [int(i) for i in np.argsort(scores, kind="stable")[:self.num_selected]]


class MultiKrum(Krum):
    """The weighted mean of the ``num_nodes_to_select`` models with the best Krum scores.

    Parameters
    ----------
    num_malicious_nodes:
        ``f``, the nodes assumed malicious.
    num_nodes_to_select:
        Models averaged. FedAvg's parameters apply.
    """

    def __init__(self, *args: Any, num_malicious_nodes: int = 0, num_nodes_to_select: int = 1,
                 **kwargs: Any) -> None:
        super().__init__(*args, num_malicious_nodes=num_malicious_nodes, **kwargs)
        self.num_nodes_to_select = num_nodes_to_select
        self.num_selected = num_nodes_to_select


class Bulyan(Krum):
    """Bulyan (El Mhamdi et al., 2018) over messages: the ``theta = n - 2f`` replies with the
    best Krum scores are selected (Multi-Krum), then each coordinate is the mean of the
    ``beta = theta - 2f`` selected values closest to their median. The round's metrics are
    those of the selected replies. With fewer than ``4f + 3`` replies the round keeps the
    global model (a warning says why).

    Parameters
    ----------
    num_malicious_nodes:
        ``f``, the nodes assumed malicious. FedAvg's parameters apply.
    """

    def select(self, results: list[tuple[NDArrays, int]]) -> list[int]:
        f = self.num_malicious_nodes
        if len(results) < 4 * f + 3:
            log.warning("Bulyan needs at least 4 * num_malicious_nodes + 3 = %d replies, "
                        "got %d; the round keeps the global model", 4 * f + 3, len(results))
            return []
        self.num_selected = len(results) - 2 * f
        return super().select(results)

    def rule(self, results: list[tuple[NDArrays, int]]) -> NDArrays:
        return mean_closest_to_median(results, len(results) - 2 * self.num_malicious_nodes)


class FedAvgM(FedAvg):
    """FedAvg with server momentum (Hsu et al., 2019).

    Parameters
    ----------
    server_learning_rate:
        Step size of the server update.
    server_momentum:
        Momentum of the server update (0.0: none). FedAvg's parameters apply.
    """

    def __init__(self, *args: Any, server_learning_rate: float = 1.0,
                 server_momentum: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.momentum_vector_: NDArrays | None = None

    def conclude_train(self, server_round: int, aggregate: NDArrays,
                       current: ArrayRecord | None) -> NDArrays:
        if current is None or (self.server_momentum == 0.0 and self.server_learning_rate == 1.0):
            return aggregate
        new, self.momentum_vector_ = fedavgm_step(
            [a.numpy() for a in current.values()], aggregate, self.momentum_vector_,
            self.server_learning_rate, self.server_momentum)
        return new

    def state_dict(self) -> dict[str, Any]:
        return {"momentum_vector": self.momentum_vector_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vector = state.get("momentum_vector")
        self.momentum_vector_ = None if vector is None else list(vector)


class FedOpt(FedAvg):
    """The server optimizers' base (Reddi et al., 2021): the averaged update is a
    pseudo-gradient for an adaptive step.

    Parameters
    ----------
    eta:
        Server-side learning rate.
    eta_l:
        Client-side learning rate (sent to nodes by the app, not used here).
    beta_1, beta_2:
        Moment parameters.
    tau:
        Degree of adaptability. FedAvg's parameters apply.
    """

    def __init__(self, *args: Any, eta: float = 1e-1, eta_l: float = 1e-1, beta_1: float = 0.0,
                 beta_2: float = 0.0, tau: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eta = eta
        self.eta_l = eta_l
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.tau = tau
        self.m_t_: NDArrays | None = None
        self.v_t_: NDArrays | None = None

    def conclude_train(self, server_round: int, aggregate: NDArrays,
                       current: ArrayRecord | None) -> NDArrays:
        if current is None:
            return aggregate
        new, self.m_t_, self.v_t_ = self.step(
            server_round, [a.numpy() for a in current.values()], aggregate)
        return new

    def state_dict(self) -> dict[str, Any]:
        return {"m_t": self.m_t_, "v_t": self.v_t_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m_t_, self.v_t_ = (None if state.get(k) is None else list(state[k])
                                for k in ("m_t", "v_t"))

    def step(self, server_round: int, current: NDArrays, averaged: NDArrays
             ) -> tuple[NDArrays, NDArrays, NDArrays]:
        """The optimizer's step: new arrays and moments."""
        raise NotImplementedError


class FedAdagrad(FedOpt):
    """FedOpt with Adagrad's step."""

    def __init__(self, *args: Any, eta: float = 1e-1, eta_l: float = 1e-1, tau: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(*args, eta=eta, eta_l=eta_l, tau=tau, **kwargs)

    def step(self, server_round: int, current: NDArrays, averaged: NDArrays
             ) -> tuple[NDArrays, NDArrays, NDArrays]:
        return fedadagrad_step(current, averaged, self.m_t_, self.v_t_, eta=self.eta,
                               beta_1=self.beta_1, tau=self.tau)


class FedAdam(FedOpt):
    """FedOpt with Adam's step."""

    def __init__(self, *args: Any, eta: float = 1e-1, eta_l: float = 1e-1,
                 beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(*args, eta=eta, eta_l=eta_l, beta_1=beta_1, beta_2=beta_2, tau=tau,
                         **kwargs)

    def step(self, server_round: int, current: NDArrays, averaged: NDArrays
             ) -> tuple[NDArrays, NDArrays, NDArrays]:
        return fedadam_step(current, averaged, self.m_t_, self.v_t_, server_round=server_round,
                            eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau)


class FedYogi(FedOpt):
    """FedOpt with Yogi's step."""

    def __init__(self, *args: Any, eta: float = 1e-2, eta_l: float = 0.0316,
                 beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3,
                 **kwargs: Any) -> None:
        super().__init__(*args, eta=eta, eta_l=eta_l, beta_1=beta_1, beta_2=beta_2, tau=tau,
                         **kwargs)

    def step(self, server_round: int, current: NDArrays, averaged: NDArrays
             ) -> tuple[NDArrays, NDArrays, NDArrays]:
        return fedyogi_step(current, averaged, self.m_t_, self.v_t_, eta=self.eta,
                            beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau)


class QFedAvg(FedAvg):
    """q-FedAvg (Li et al., 2020): nodes with a higher training loss weigh more, by ``q``.

    Parameters
    ----------
    client_learning_rate:
        The nodes' learning rate (its inverse is the Lipschitz constant of the step).
    q:
        Fairness: 0 is FedAvg's step; larger values favour the nodes that fit worst.
    train_loss_key:
        The reply metric holding the node's training loss. FedAvg's parameters apply.
    """

    streams = False

    def __init__(self, client_learning_rate: float, q: float = 0.1,
                 train_loss_key: str = "train_loss", *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_learning_rate = client_learning_rate
        self.q = q
        self.train_loss_key = train_loss_key

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        current = self._current
        if current is None:
            raise RuntimeError("QFedAvg aggregates against the arrays it sent: run it with "
                               "start(), or call configure_train first")
        models, losses, contents = [], [], []
        for reply in replies:
            if self._weight(reply) is None or not self._one_array_record(reply):
                continue
            metrics = next(iter(reply.content.metric_records.values()))
            loss = metrics.get(self.train_loss_key)
            if isinstance(loss, bool) or not isinstance(loss, int | float):
                raise ValueError(f"QFedAvg needs the training loss under {self.train_loss_key!r}"
                                 f" in every train reply; node {reply.metadata.src_node_id} "
                                 f"sent {loss!r}")
            record = next(iter(reply.content.array_records.values()))
            models.append([a.numpy() for a in record.values()])
            losses.append(float(loss))
            contents.append(reply.content)
        if not models:
            return None, None
        before = [a.numpy() for a in current.values()]
        steps = [qffl_client_step(before, model, loss, self.q, self.client_learning_rate)
                 for model, loss in zip(models, losses, strict=True)]
        new = aggregate_qffl(before, [delta for delta, _ in steps], [h for _, h in steps])
        return (_record(list(current.keys()), new),
                self.train_metrics_aggr_fn(contents, self.weighted_by_key))

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._current = arrays
        return super().configure_train(server_round, arrays, config, grid)
