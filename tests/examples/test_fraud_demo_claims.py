"""The demo end to end on files in the raw claims layout, through the site agents; the same
data as a provider table gives the same federation."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

import fedsilo.examples.fraud.demo as demo
from fedsilo.examples.fraud.claims import aggregate_claims, find_claims_files, sha256_of
from fedsilo.examples.fraud.claims_fixture import ClaimsFixtureSize, write_claims_files
from fedsilo.examples.fraud.model import load_model

pytestmark = pytest.mark.slow

# A few thousand claims; enough fraudulent providers for three sites.
SIZE = ClaimsFixtureSize(providers=450, beneficiaries=1800, inpatient=400, outpatient=3600)


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("claims")
    write_claims_files(root / "raw", SIZE, seed=5, n_states=12)
    report = demo.run_demo(root / "work", rounds=2, n_sites=3, seed=1, data=root / "raw",
                           console=Console(file=io.StringIO(), width=200))
    return root, root / "work", report


def test_the_raw_files_federate_through_the_site_agents(
    raw_run: tuple[Path, Path, dict[str, Any]]
) -> None:
    root, work, report = raw_run
    assert set(report["jobs"]) == {"site1", "site2", "site3"}
    assert {job["status"] for job in report["jobs"].values()} == {"Completed"}
    assert report["data"]["n_providers"] == SIZE.providers
    assert [r["round"] for r in report["rounds"]] == [0, 1, 2]
    source = report["data"]["source"]
    assert source["source"] == "raw claims"
    assert source["path"] == str(root / "raw")
    files = find_claims_files(root / "raw").as_dict()
    assert {kind: f["path"] for kind, f in source["files"].items()} == {
        kind: str(path) for kind, path in files.items()}
    assert {kind: f["sha256"] for kind, f in source["files"].items()} == {
        kind: sha256_of(path) for kind, path in files.items()}
    for site in report["data"]["sites"]:  # each site holds its own providers' rows only
        train = work / "sites" / site["name"] / "channels" / "train" / "train.csv"
        assert len(train.read_text().splitlines()) - 1 == site["n_train"]


def test_the_same_data_as_a_provider_table_gives_the_same_federation(
    raw_run: tuple[Path, Path, dict[str, Any]]
) -> None:
    root, work, report = raw_run
    table = aggregate_claims(find_claims_files(root / "raw"))
    table.to_csv(root / "providers.csv", index=False)
    again = demo.run_demo(root / "work-table", rounds=2, n_sites=3, seed=1,
                          data=root / "providers.csv",
                          console=Console(file=io.StringIO(), width=200))
    assert again["data"]["source"]["source"] == "provider table"
    assert again["data"]["sites"] == report["data"]["sites"]
    np.testing.assert_allclose(load_model(root / "work-table" / "model.joblib").coef_,
                               load_model(work / "model.joblib").coef_, rtol=1e-9, atol=1e-12)
    for name in ("roc_auc", "average_precision", "accuracy"):
        assert again["federated"][name] == pytest.approx(report["federated"][name], abs=1e-9)
