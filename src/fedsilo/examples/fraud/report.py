"""What the demo shows people: a line per round while it runs, a comparison table at the end."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["RoundProgress", "comparison_table", "format_round"]

# Figures that depend on the threshold, after the threshold-free ROC-AUC and PR-AUC.
_AT_THRESHOLD = (("accuracy", "acc."), ("precision", "prec."), ("recall", "rec."),
                 ("f1", "F1"))
_SHORT = (("accuracy", "acc"), ("precision", "prec"), ("recall", "rec"), ("f1", "F1"),
          ("roc_auc", "AUC"), ("average_precision", "AP"))


def format_round(server_round: int, loss: float, metrics: Mapping[str, float]) -> str:
    """One line with a round's server-side figures, short enough for an 80-column terminal."""
    label = "initial" if server_round == 0 else f"round {server_round}"
    figures = "  ".join(f"{short} {metrics[name]:.3f}" for name, short in _SHORT
                        if name in metrics)
    return f"{label:>8}  loss {loss:.4f}  {figures}"


class RoundProgress:
    """A progress bar over the rounds and one printed line per evaluated round.

    ``on_round`` is the server-side evaluation callback; it runs in the server's thread.
    """

    def __init__(self, console: Console, rounds: int) -> None:
        self.console = console
        self.rounds = rounds
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        self._progress = Progress(
            TextColumn("[bold]federated training"), BarColumn(), MofNCompleteColumn(),
            TextColumn("rounds"), TimeElapsedColumn(), console=console, transient=True)
        self._task = self._progress.add_task("rounds", total=rounds)

    def __enter__(self) -> RoundProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._closed = True
            self._progress.stop()

    def on_round(self, server_round: int, loss: float, metrics: dict[str, float]) -> None:
        line = format_round(server_round, loss, metrics)
        with self._lock:
            if self._closed:  # a server left running after a failed demo: stay quiet
                return
            self.lines.append(line)
            self._progress.console.print(line, highlight=False)
            if server_round > 0:
                self._progress.update(self._task, completed=min(server_round, self.rounds))


def comparison_table(
    rows: Mapping[str, Mapping[str, Any]], title: str, caption: str | None = None
) -> Table:
    """A table with one row per model: the ranking figures with their intervals where known,
    the figures at the threshold, and the confusion matrix (TP, FP, FN, TN) where known."""
    # Light rules and cells that wrap at their spaces: the table fits 80 columns unclipped.
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", min_width=10)
    for header in ("ROC-AUC\n95% CI", "PR-AUC\n95% CI",
                   *(header for _, header in _AT_THRESHOLD), "TP/FP\nFN/TN"):
        table.add_column(header, justify="right", no_wrap=True)
    for name, metrics in rows.items():
        style = "bold" if name.startswith("federated") else None
        confusion = metrics.get("confusion")
        table.add_row(
            name,
            _with_interval(metrics["roc_auc"], metrics.get("roc_auc_ci")),
            _with_interval(metrics["average_precision"], metrics.get("average_precision_ci")),
            *(f"{metrics[key]:.3f}" for key, _ in _AT_THRESHOLD),
            f"{confusion['tp']}/{confusion['fp']}\n{confusion['fn']}/{confusion['tn']}"
            if confusion else "",
            style=style)
    return table


def _with_interval(value: float, interval: Sequence[float] | None) -> str:
    if not interval:
        return f"{value:.3f}"
    return f"{value:.3f}\n{interval[0]:.2f}-{interval[1]:.2f}"
