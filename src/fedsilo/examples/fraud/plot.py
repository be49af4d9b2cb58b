"""A picture of a federation's progress: each metric of the global model per round."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work without a display

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_history"]


def plot_history(
    history_metrics: Mapping[str, Sequence[tuple[int, float]]],
    path: str | Path,
    *,
    title: str = "Global model on the server's test set",
    reference: Mapping[str, float] | None = None,
    reference_label: str = "always legitimate",
) -> Path:
    """Draw each metric's ``[(round, value)]`` series in its own panel; save a PNG at ``path``.

    ``reference`` gives, per metric, a level drawn as a dashed line labelled
    ``reference_label`` (the "always legitimate" baseline, for the demo), so that a figure
    reads against what flagging nobody would score.
    """
    names = [name for name, series in history_metrics.items() if series]
    if not names:
        raise ValueError("no metric has any rounds to plot")
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows),
                                squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        rounds = [int(r) for r, _ in history_metrics[name]]
        values = [float(v) for _, v in history_metrics[name]]
        ax.plot(rounds, values, marker="o", label="global model")
        if reference is not None and name in reference:
            ax.axhline(reference[name], color="grey", linestyle="--", label=reference_label)
            ax.legend(fontsize="small")
        ax.set_title(name)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
