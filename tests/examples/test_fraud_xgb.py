"""``fedsilo demo --app fraud-xgb``: the XGBoost fraud app (a Flower app with FedXgbBagging)
through three site agents, checked from what it leaves on disk.

The federated booster the federation kept (``run/final_arrays.npz``) must be the one the
ServerApp saved and the one every site kept from its last evaluation, must hold one tree per
site per round, and must score on the server's test set what the report says, scored here
again with scikit-learn.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from fedsilo.examples.fraud.data import FEATURES, LABEL
from fedsilo.examples.fraud_xgb.demo import app_params

SITES = ("site1", "site2", "site3")
ROUNDS = 2


def _booster(model: bytes) -> xgb.Booster:
    booster = xgb.Booster(params=app_params())
    booster.load_model(bytearray(model))
    return booster


@pytest.mark.slow
def test_the_demo_federates_xgboost_across_three_site_agents(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "fedsilo.cli.main", "demo", "--app",
                           "fraud-xgb", "--rounds", str(ROUNDS), "--providers", "1500"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    work = tmp_path / "fedsilo-demo"  # the default, relative to where it ran
    assert f"round {ROUNDS}/{ROUNDS}" in done.stdout and "federated (FedXgbBagging)" in done.stdout
    report = json.loads((work / "report.json").read_text())

    with np.load(work / "run" / "final_arrays.npz") as arrays:
        assert arrays.files == ["arr_0"] and arrays["arr_0"].dtype == np.uint8
        kept = arrays["arr_0"].tobytes()
    federated = _booster(kept)
    assert federated.num_boosted_rounds() == ROUNDS * len(SITES) == report["config"]["trees"]

    test = pd.read_csv(work / "server" / "test.csv")
    rows = xgb.DMatrix(test[FEATURES].to_numpy(dtype=float))
    fraud = federated.predict(rows)
    # The ServerApp's own copy and the demo's are the same model as the kept arrays.
    for saved in (work / "run" / "model.json", work / "model.json"):
        np.testing.assert_array_equal(xgb.Booster(model_file=str(saved)).predict(rows), fraud)
    assert report["federated"]["roc_auc"] == pytest.approx(
        roc_auc_score(test[LABEL], fraud), rel=1e-12)
    history = json.loads((work / "run" / "history.json").read_text())
    assert [r for r, _ in history["losses_centralized"]] == list(range(1, ROUNDS + 1))
    assert history["metrics_centralized"]["roc_auc"][-1][1] == pytest.approx(
        report["federated"]["roc_auc"], rel=1e-6)
    assert set(report["sites"]) == set(SITES) and report["pooled"]["roc_auc_ci"]
    assert (work / "metrics.png").read_bytes().startswith(b"\x89PNG")

    for site in SITES:  # each site's job left the federation's model in its own artifacts
        (artifact,) = (work / "sites" / site / "artifacts").rglob("model.tar.gz")
        with tarfile.open(artifact) as tar:
            member = tar.extractfile("model.json")
            assert member is not None
            np.testing.assert_array_equal(_booster(member.read()).predict(rows), fraud)
