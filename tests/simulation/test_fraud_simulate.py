"""`fedsilo simulate`: the fraud federation over many non-identical sites, the demo's report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fedsilo.cli.main import app
from fedsilo.examples.fraud.data import generate_providers
from fedsilo.examples.fraud.prepare import partition_providers

DEMO_REPORT_KEYS = {"federated", "pooled", "pooled_same_effort", "always_legitimate", "sites",
                    "mean_site", "rounds", "reading", "shows", "config", "data", "files",
                    "elapsed_s"}


@pytest.fixture(scope="module")
def providers() -> pd.DataFrame:
    return generate_providers(12_000, seed=1)


def test_more_sites_than_states_cut_each_state_by_specialty(providers: pd.DataFrame) -> None:
    parts = partition_providers(providers, 60)
    assert len(parts) == 60
    indices = np.concatenate([index.to_numpy() for _, index in parts])
    assert len(indices) == len(providers) and len(set(indices.tolist())) == len(providers)
    per_state: dict[str, int] = {}
    for states, _ in parts:
        assert len(states) == 1
        per_state[states[0]] = per_state.get(states[0], 0) + 1
    counts = providers["state"].value_counts()
    assert set(per_state) == set(counts.index)
    # Sites follow the states' sizes: the largest state holds the most sites.
    assert per_state[counts.index[0]] == max(per_state.values())
    assert per_state[counts.index[0]] >= 60 * counts.iloc[0] / len(providers) - 1
    # Sites of one state differ in specialty mix.
    largest = [index for states, index in parts if states == (counts.index[0],)]
    mixes = [providers.loc[index, "specialty"].value_counts(normalize=True) for index in largest]
    assert mixes[0].index[0] != mixes[-1].index[0]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    output = tmp_path_factory.mktemp("simulate")
    result = CliRunner().invoke(app, ["simulate", "--output", str(output), "--rounds", "2",
                                      "--sites", "40", "--providers", "16000", "--workers", "2"],
                                env={"COLUMNS": "200"})  # one table row per line
    assert result.exit_code == 0, result.output
    return output, json.loads((output / "report.json").read_text()), result.output


@pytest.mark.slow
def test_simulate_writes_the_demos_report_for_every_site(
        simulated: tuple[Path, dict[str, Any], str]) -> None:
    output, report, printed = simulated
    assert set(report) == DEMO_REPORT_KEYS
    for name in ("model.joblib", "history.json", "metrics.png", "report.json"):
        assert (output / name).is_file(), name
    assert len(report["sites"]) == 40 and report["config"]["n_sites"] == 40
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    history = json.loads((output / "history.json").read_text())
    assert [r for r, _ in history["metrics_distributed_fit"]["train_loss"]] == [1, 2]
    assert "federated (FedAvg)" in printed and "mean of lone sites" in printed
    assert "alone (best)" in printed and "alone (worst)" in printed
    # Federating beat training from nothing: the loss fell from the zero model's log(2).
    assert report["rounds"][-1]["loss"] < report["rounds"][0]["loss"] == pytest.approx(np.log(2))


@pytest.mark.slow
def test_simulated_sites_hold_non_identical_data(
        simulated: tuple[Path, dict[str, Any], str]) -> None:
    output, report, _ = simulated
    sites = report["data"]["sites"]
    assert len({tuple(s["states"]) for s in sites}) >= 20
    fraud_rates = []
    for site in sites:
        validation = pd.read_csv(output / "sites" / site["name"] / "train" / "validation.csv")
        fraud_rates.append(validation["is_fraud"].mean())
    assert max(fraud_rates) > 2 * min(fraud_rates)
