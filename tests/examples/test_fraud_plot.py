"""The per-round metrics picture."""

from __future__ import annotations

from pathlib import Path

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
