"""The demo end to end: a server thread, one client process per site, the report."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import fedsilo.examples.fraud.demo as demo
from fedsilo.examples.fraud.launch import ClientProcessError
from fedsilo.examples.fraud.model import load_model
from fedsilo.examples.fraud.prepare import SiteData, write_site_channel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    output = tmp_path_factory.mktemp("demo")
    console = Console(file=io.StringIO(), width=120)
    report = demo.run_demo(output, rounds=3, n_sites=3, seed=0, console=console)
    return output, report, console.file.getvalue()  # type: ignore[attr-defined]


def test_writes_the_model_history_and_plot(run: tuple[Path, dict[str, Any], str]) -> None:
    output, report, _ = run
    for name in ("model.joblib", "history.json", "metrics.png", "report.json"):
        assert (output / name).is_file(), name
    history = json.loads((output / "history.json").read_text())
    assert set(history) == {"losses_distributed", "losses_centralized", "metrics_distributed_fit",
                            "metrics_distributed", "metrics_centralized"}
    assert [r for r, _ in history["losses_centralized"]] == [0, 1, 2, 3]
    assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(
        history["metrics_centralized"])
    assert "train_loss" in history["metrics_distributed_fit"]
    assert json.loads((output / "report.json").read_text())["federated"] == report["federated"]


def test_lays_out_each_party_in_its_own_directory(run: tuple[Path, dict[str, Any], str]) -> None:
    output, report, _ = run
    assert (output / "server" / "test.csv").is_file()
    for site in report["data"]["sites"]:
        site_dir = output / "sites" / site["name"]
        assert (site_dir / "train" / "train.csv").is_file()
        assert (site_dir / "model" / "model.joblib").is_file()
        assert "model saved" in (site_dir / "client.log").read_text()


def test_the_saved_model_is_the_final_global_model(run: tuple[Path, dict[str, Any], str]) -> None:
    output, report, _ = run
    model = load_model(output / "model.joblib")
    for site in report["data"]["sites"]:
        local = load_model(output / "sites" / site["name"] / "model")
        np.testing.assert_array_equal(local.coef_, model.coef_)
    last = report["rounds"][-1]
    assert last["loss"] == pytest.approx(report["federated"]["loss"])
    assert last["roc_auc"] == pytest.approx(report["federated"]["roc_auc"])


def test_federation_beats_the_typical_lone_site(run: tuple[Path, dict[str, Any], str]) -> None:
    _, report, _ = run
    federated, lone = report["federated"], report["mean_site"]
    assert set(report["sites"]) == {"site1", "site2", "site3"}
    assert federated["roc_auc"] > lone["roc_auc"]
    assert federated["f1"] > lone["f1"]
    assert federated["accuracy"] > lone["accuracy"]


def test_shows_each_round_and_the_comparison(run: tuple[Path, dict[str, Any], str]) -> None:
    _, _, shown = run
    for line in ("initial  loss 0.6931", "round 1  loss", "round 3  loss", "ROC-AUC", "pooled",
                 "mean of lone sites", "site2 alone"):
        assert line in shown


def test_a_failing_site_is_named_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write_broken_for_site2(site: SiteData, directory: str | Path) -> Path:
        written = write_site_channel(site, directory)
        if site.name == "site2":
            (written / "train.csv").unlink()
        return written

    monkeypatch.setattr(demo, "write_site_channel", write_broken_for_site2)
    with pytest.raises(ClientProcessError, match="site2") as caught:
        demo.run_demo(tmp_path, rounds=2, console=Console(file=io.StringIO()))
    assert "train.csv" in str(caught.value)


@pytest.mark.parametrize(("rounds", "n_sites", "message"), [(0, 3, "rounds"), (2, 0, "n_sites")])
def test_bad_settings_are_refused_before_anything_starts(
    rounds: int, n_sites: int, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        demo.run_demo(tmp_path, rounds=rounds, n_sites=n_sites, console=Console(file=io.StringIO()))
    assert not any(tmp_path.iterdir())
