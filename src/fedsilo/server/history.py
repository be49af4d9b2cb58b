"""The record of a federation: losses and metrics per round."""

from __future__ import annotations

from typing import Any

from fedsilo.common.typing import Scalar

__all__ = ["History"]


class History:
    """Losses as ``[(round, loss)]`` and metrics as ``{name: [(round, value)]}``.

    ``failures`` lists every client that failed a round's fit or evaluation, as
    ``(round, client id, reason)``: which clients were lost and why.
    """

    def __init__(self) -> None:
        self.losses_distributed: list[tuple[int, float]] = []
        self.losses_centralized: list[tuple[int, float]] = []
        self.metrics_distributed_fit: dict[str, list[tuple[int, Scalar]]] = {}
        self.metrics_distributed: dict[str, list[tuple[int, Scalar]]] = {}
        self.metrics_centralized: dict[str, list[tuple[int, Scalar]]] = {}
        self.failures: list[tuple[int, str, str]] = []

    def add_failure(self, server_round: int, cid: str, reason: str) -> None:
        self.failures.append((server_round, cid, reason))

    def add_loss_distributed(self, server_round: int, loss: float) -> None:
        self.losses_distributed.append((server_round, loss))

    def add_loss_centralized(self, server_round: int, loss: float) -> None:
        self.losses_centralized.append((server_round, loss))

    def add_metrics_distributed_fit(self, server_round: int, metrics: dict[str, Scalar]) -> None:
        _append(self.metrics_distributed_fit, server_round, metrics)

    def add_metrics_distributed(self, server_round: int, metrics: dict[str, Scalar]) -> None:
        _append(self.metrics_distributed, server_round, metrics)

    def add_metrics_centralized(self, server_round: int, metrics: dict[str, Scalar]) -> None:
        _append(self.metrics_centralized, server_round, metrics)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (bytes values become hex strings)."""
        def clean(value: Scalar) -> Any:
            return value.hex() if isinstance(value, bytes) else value

        def rows(pairs: list[tuple[int, Any]]) -> list[list[Any]]:
            return [[r, clean(v)] for r, v in pairs]

        return {
            "losses_distributed": rows(self.losses_distributed),
            "losses_centralized": rows(self.losses_centralized),
            "metrics_distributed_fit": {
                k: rows(v) for k, v in self.metrics_distributed_fit.items()},
            "metrics_distributed": {k: rows(v) for k, v in self.metrics_distributed.items()},
            "metrics_centralized": {k: rows(v) for k, v in self.metrics_centralized.items()},
            "failures": [list(failure) for failure in self.failures],
        }

    def __repr__(self) -> str:
        lines = ["History"]
        for name, pairs in (("loss, distributed", self.losses_distributed),
                            ("loss, centralized", self.losses_centralized)):
            if pairs:
                lines.append(f"  {name}: " + ", ".join(f"r{r}={v:.4g}" for r, v in pairs))
        for name, metrics in (("metrics, distributed fit", self.metrics_distributed_fit),
                              ("metrics, distributed", self.metrics_distributed),
                              ("metrics, centralized", self.metrics_centralized)):
            if metrics:
                lines.append(f"  {name}: {metrics}")
        if self.failures:
            lines.append(f"  failures: {len(self.failures)} (round, client, reason) in "
                         "History.failures")
        return "\n".join(lines)


def _append(
    store: dict[str, list[tuple[int, Scalar]]], server_round: int, metrics: dict[str, Scalar]
) -> None:
    for key, value in metrics.items():
        store.setdefault(key, []).append((server_round, value))
