"""The demo end to end: three site agent processes, a training job in each, the report."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy.stats import bootstrap
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

import fedsilo.examples.fraud.demo as demo
from fedsilo.deploy.errors import JobError
from fedsilo.examples.fraud.data import FEATURES, LABEL
from fedsilo.examples.fraud.model import load_model
from fedsilo.examples.fraud.prepare import SiteData, write_site_channel
from fedsilo.examples.fraud.scoring import BOOTSTRAP_RESAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    output = tmp_path_factory.mktemp("demo")
    console = Console(file=io.StringIO(), width=200)
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


def test_each_site_keeps_its_data_policy_and_artifact(
    run: tuple[Path, dict[str, Any], str]
) -> None:
    output, report, _ = run
    assert (output / "server" / "test.csv").is_file()
    test_rows = (output / "server" / "test.csv").read_text().splitlines()[1:]
    assert set(report["jobs"]) == {"site1", "site2", "site3"}
    for site in report["data"]["sites"]:
        name = site["name"]
        root = output / "sites" / name
        channel = root / "channels" / "train"
        assert sorted(p.name for p in (root / "channels").iterdir()) == ["identity", "train"]
        train_rows = (channel / "train.csv").read_text().splitlines()[1:]
        assert len(train_rows) == site["n_train"]
        assert not set(test_rows) & set(train_rows)  # the test set stayed on the server
        roles = json.loads((root / "policy" / "roles.json").read_text())
        assert roles  # the site's own launch policy
        job = report["jobs"][name]
        assert job["status"] == "Completed"
        (record,) = [json.loads(p.read_text()) for p in (root / "jobs").glob("*/record.json")]
        assert record["status"] == "Completed"
        assert job["artifact"] == f"site://{name}/" + str(
            next((root / "artifacts").rglob("model.tar.gz")).relative_to(root))
        assert (output / "logs" / f"agent-{name}.log").is_file()


def test_the_saved_model_is_the_final_global_model(
    run: tuple[Path, dict[str, Any], str], tmp_path: Path
) -> None:
    output, report, _ = run
    model = load_model(output / "model.joblib")
    np.testing.assert_array_equal(load_model(output / "run" / "model.joblib").coef_, model.coef_)
    for name, job in report["jobs"].items():
        archive = output / "sites" / name / job["artifact"].removeprefix(f"site://{name}/")
        with tarfile.open(archive) as tar:
            assert tar.getnames() == ["model.joblib"]
            tar.extractall(tmp_path / name, filter="data")
        np.testing.assert_allclose(load_model(tmp_path / name / "model.joblib").coef_,
                                   model.coef_, rtol=1e-12)
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


def test_shows_each_round_each_job_and_the_comparison(
    run: tuple[Path, dict[str, Any], str]
) -> None:
    _, _, shown = run
    for line in ("initial: loss 0.6931", "round 1/3: loss", "round 3/3: loss",
                 "site2: Completed", "ROC-AUC", "pooled", "mean of lone sites", "site2 alone"):
        assert line in shown, line


def test_a_rerun_replaces_the_previous_run(tmp_path: Path) -> None:
    console = Console(file=io.StringIO())
    first = demo.run_demo(tmp_path, rounds=1, n_sites=2, n_providers=800, console=console)
    second = demo.run_demo(tmp_path, rounds=1, n_sites=2, n_providers=800, console=console)
    assert first["jobs"]["site1"]["job"] != second["jobs"]["site1"]["job"]
    records = list((tmp_path / "sites" / "site1" / "jobs").glob("*/record.json"))
    assert len(records) == 1  # the first run's site was removed, not mixed in


def test_a_directory_that_is_not_a_demos_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(demo.DemoError, match="not empty"):
        demo.run_demo(tmp_path, rounds=1, console=Console(file=io.StringIO()))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_failing_site_is_named_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write_broken_for_site2(site: SiteData, directory: str | Path) -> Path:
        written = write_site_channel(site, directory)
        if site.name == "site2":
            (written / "train.csv").unlink()
        return written

    monkeypatch.setattr(demo, "write_site_channel", write_broken_for_site2)
    with pytest.raises(JobError) as caught:
        demo.run_demo(tmp_path, rounds=2, n_providers=800, console=Console(file=io.StringIO()))
    assert caught.value.site == "site2"
    assert caught.value.job_status == "Failed"
    assert "train.csv" in caught.value.reason
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize(("rounds", "n_sites", "message"), [(0, 3, "rounds"), (2, 0, "n_sites")])
def test_bad_settings_are_refused_before_anything_starts(
    rounds: int, n_sites: int, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        demo.run_demo(tmp_path, rounds=rounds, n_sites=n_sites, console=Console(file=io.StringIO()))
    assert not any(tmp_path.iterdir())


def _fraud_probability(model: Any, X: np.ndarray) -> np.ndarray:
    return model.predict_proba(X)[:, list(model.classes_).index(1)]


def _interval(metric: Any, y: np.ndarray, p: np.ndarray, seed: int) -> list[float]:
    result = bootstrap((y, p), lambda a, b: metric(a, b), paired=True, vectorized=False,
                       n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=0.95,
                       method="percentile", random_state=np.random.default_rng(seed))
    return [result.confidence_interval.low, result.confidence_interval.high]


def test_the_report_matches_scikit_learn_on_the_files_it_leaves(
    run: tuple[Path, dict[str, Any], str]
) -> None:
    output, report, _ = run
    test = pd.read_csv(output / "server" / "test.csv")
    X, y = test[FEATURES].to_numpy(dtype=float), test[LABEL].to_numpy()
    assert report["data"]["source"] == {"source": "synthetic", "seed": 0, "n_providers": 5400}

    # The pooled model is the converged fit on every site's training rows, refitted here.
    train = pd.concat([pd.read_csv(p) for p in
                       sorted((output / "sites").glob("*/channels/train/train.csv"))])
    refit = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-8).fit(
        train[FEATURES].to_numpy(dtype=float), train[LABEL].to_numpy())
    saved_pooled = load_model(output / "pooled-model.joblib")
    assert saved_pooled.n_iter_[0] < saved_pooled.max_iter  # stopped by itself: converged
    np.testing.assert_allclose(saved_pooled.coef_, refit.coef_, rtol=0.02, atol=2e-3)

    for name, model_file in (("federated", "model.joblib"), ("pooled", "pooled-model.joblib")):
        figures = report[name]
        p = _fraud_probability(load_model(output / model_file), X)
        assert figures["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert figures["average_precision"] == pytest.approx(average_precision_score(y, p),
                                                             abs=1e-12)
        tn, fp, fn, tp = confusion_matrix(y, (p > 0.5).astype(int)).ravel()
        assert figures["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        assert figures["threshold"] == 0.5
        assert figures["accuracy"] == pytest.approx((tp + tn) / len(y))
        for metric, key in ((roc_auc_score, "roc_auc"), (average_precision_score,
                                                         "average_precision")):
            low, high = figures[f"{key}_ci"]
            assert [low, high] == pytest.approx(_interval(metric, y, p, seed=0), abs=1e-12)
            assert low <= figures[key] <= high
            assert high - low > 0.01  # about a hundred frauds: the interval is not a point
    refit_p = _fraud_probability(refit, X)
    assert report["pooled"]["roc_auc"] == pytest.approx(roc_auc_score(y, refit_p), abs=2e-3)

    baseline = report["always_legitimate"]
    assert baseline["accuracy"] == pytest.approx(1 - y.mean())
    assert baseline["confusion"] == {"tn": int((y == 0).sum()), "fp": 0, "fn": int(y.sum()),
                                     "tp": 0}
    assert baseline["roc_auc"] == 0.5
    assert baseline["average_precision"] == pytest.approx(y.mean())
    assert "SMOTE" in report["reading"] and "> 0.5" in report["reading"]


def test_the_comparison_shows_the_baseline_intervals_and_the_reading(
    run: tuple[Path, dict[str, Any], str]
) -> None:
    _, report, shown = run
    for text in ("always legitimate", "PR-AUC", "95% CI", "TP/FP", "FN/TN", "SMOTE-balanced",
                 "pooled, same effort", "data: synthetic, 5400 providers drawn with seed 0",
                 f"{report['always_legitimate']['accuracy']:.3f}", *report["shows"]):
        assert text in shown, text
    assert len(report["shows"]) == 4
