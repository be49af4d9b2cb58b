"""The per-round metrics picture."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from fedsilo.examples.fraud.plot import plot_history


def test_writes_a_png(tmp_path: Path) -> None:
    series = {"accuracy": [(0, 0.5), (1, 0.8), (2, 0.85)], "loss": [(0, 0.69), (1, 0.4)],
              "f1": [(1, 0.3)], "roc_auc": [(1, 0.8)]}
    path = plot_history(series, tmp_path / "out" / "metrics.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000


def test_nothing_to_plot_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no metric"):
        plot_history({"accuracy": []}, tmp_path / "metrics.png")


def test_the_baseline_is_drawn_as_a_grey_dashed_line(tmp_path: Path) -> None:
    series = {"accuracy": [(0, 0.5), (1, 0.8), (2, 0.85)], "roc_auc": [(0, 0.5), (2, 0.9)]}
    plain = plot_history(series, tmp_path / "plain.png")
    marked = plot_history(series, tmp_path / "marked.png",
                          reference={"accuracy": 0.898, "roc_auc": 0.5, "not_plotted": 1.0})

    def grey_pixels(path: Path) -> int:
        rgb = (mpimg.imread(path)[..., :3] * 255).round()
        return int(np.all(rgb == 128, axis=-1).sum())  # matplotlib's "grey" is #808080

    # Two dashed lines across their panels, and their legends; the plain figure has only a
    # few grey pixels where anti-aliasing happens to land on #808080.
    assert grey_pixels(marked) > grey_pixels(plain) + 200
