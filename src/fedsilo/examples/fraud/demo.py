"""The fraud federation end to end on one machine, and how it compares with the alternatives.

``run_demo`` runs the federation the way separate organisations would: each site is a
directory of its own with its data, its launch policy and its artifacts, served by its own
site agent process over HTTPS; the federation server assumes each site's launch role,
starts a training job there, and federates the jobs over mutual TLS. The work directory::

    output_dir/
      .fedsilo-demo              marks the directory as the demo's (a rerun replaces it)
      federation.toml            the run, as ``fedsilo federate`` reads it
      certs/                     the federation's CA, the server's and the orchestrator's
                                 certificates
      server/test.csv            the server's test set; no site ever sees it
      sites/<site>/              one site (see fedsilo.deploy.site):
        channels/train/            its training and validation rows, read only by its jobs
        channels/identity/         the key of its client certificate, for its jobs
        code/apps/<sha256>.tar.gz  the fraud app, uploaded by the orchestrator for its jobs
        policy/roles.json          the launch role the server may assume, and what it allows
        policy/apps.json           the app's digest, approved by the site
        jobs/<job>/                the job's record.json, output.log and working directories
        artifacts/fl/<job>/output/model.tar.gz   the final model, left in the site
      logs/agent-<site>.log      each site agent's log
      run/                       the orchestrator's final_arrays.npz, history.json,
                                 federation.json, and the app's model.joblib
      model.joblib               the final global model (the same as run/model.joblib)
      pooled-model.joblib        the pooled model, trained to convergence
      history.json, metrics.png  the server's figures per round (the plot shows the
                                 "always legitimate" baseline as a dashed line)
      report.json                the comparison below, the data, the jobs and the timings

After the last round the final global model is scored on the server's test set next to the
alternatives, each of the same model family on the same inputs, trained to convergence: all
sites' data pooled in one place (which the sites may not do) and each site alone; next to
them the pooled model given only the federation's optimizer effort, and the "always
legitimate" baseline that flags nobody. :mod:`.scoring` says what each figure means.

The data are drawn (:func:`~fedsilo.examples.fraud.data.generate_providers`, with the seed)
unless ``data`` names a provider table or a directory of the raw claims files
(:mod:`.claims`); the report records which, with each file's SHA-256.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from sklearn.linear_model import LogisticRegression

import fedsilo as fl
from fedsilo.deploy.errors import JobError
from fedsilo.deploy.orchestrator import FederationError, FederationResult
from fedsilo.deploy.sandbox import WorkDirectoryError, claim_work_directory, run_local_federation
from fedsilo.examples.fraud.baselines import mean_metrics, pooled_model, site_models
from fedsilo.examples.fraud.claims import read_provider_data
from fedsilo.examples.fraud.data import LABEL, generate_providers
from fedsilo.examples.fraud.model import new_model, save_model, set_model_params
from fedsilo.examples.fraud.plot import plot_history
from fedsilo.examples.fraud.prepare import (
    FederatedSplit,
    load_test_set,
    prepare_federation,
    write_site_channel,
    write_test_set,
)
from fedsilo.examples.fraud.report import comparison_table
from fedsilo.examples.fraud.scoring import (
    CONFIDENCE,
    THRESHOLD,
    baseline_scores,
    fraud_probability,
    score,
)

__all__ = ["DemoError", "FederationError", "JobError", "describe_source", "findings",
           "load_demo_data", "prepare_work", "print_report", "run_demo"]

# What a run writes at the top of its directory; a rerun removes exactly these first.
APP_DIR = Path(__file__).parent / "app"  # the fraud app: site program and server function
RUN_ENTRIES = ("federation.toml", "certs", "server", "sites", "logs", "run", "model.joblib",
               "pooled-model.joblib", "history.json", "metrics.png", "report.json")
POOLED_MODEL_FILE = "pooled-model.joblib"

# How to read the comparison; the report says it, and so does the text under the table.
READING = (
    "ROC-AUC and PR-AUC (average precision) rank providers by fraud probability and need no "
    "threshold; under each, its {confidence:.0%} bootstrap interval over the test providers. "
    "Accuracy, precision, recall, F1 and the confusion matrix flag a provider at fraud "
    "probability > {threshold}; the models were trained on SMOTE-balanced rows, so their "
    "probabilities overstate fraud, and these figures hold at this threshold only. "
    "'always legitimate' flags nobody: read accuracy against it.")


DemoError = WorkDirectoryError  # the demo cannot use the directory it was given


def run_demo(
    output_dir: Path,
    rounds: int = 5,
    n_sites: int = 3,
    seed: int = 0,
    n_providers: int = 5400,
    console: Console | None = None,
    *,
    penalty: str = "l2",
    max_iter: int = 10,
    data: Path | None = None,
) -> dict[str, Any]:
    """Run the federation through site agents on this machine; return the report.

    ``data`` is a provider table (CSV) or a directory holding the four raw claims files;
    without it ``n_providers`` providers are drawn with ``seed``. Bad data raises
    :class:`~fedsilo.examples.fraud.data.ProviderSchemaError` before anything is written.

    The report (also in ``report.json``) holds ``federated``, ``pooled`` and ``mean_site``
    metric dicts, ``sites`` (site name to its lone-training metrics), ``rounds`` (the
    server's figures per round), ``jobs`` (each site's training job and artifact),
    ``data``, ``config``, ``files`` and ``elapsed_s``. A site whose job fails raises
    :class:`~fedsilo.deploy.errors.JobError` naming the site and its reason; a server or
    agent that fails raises :class:`~fedsilo.deploy.orchestrator.FederationError`.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if n_sites < 1:
        raise ValueError(f"n_sites must be at least 1, got {n_sites}")
    started = time.monotonic()
    console = console if console is not None else Console()
    output_dir = Path(os.path.abspath(Path(output_dir).expanduser()))
    providers, source, split = prepare_work(output_dir, RUN_ENTRIES, data, n_sites=n_sites,
                                            n_providers=n_providers, seed=seed)
    X_test, y_test = load_test_set(output_dir / "server")
    console.print(f"{len(providers)} providers, {providers[LABEL].mean():.1%} fraudulent; the "
                  f"server keeps {len(y_test)} of them to test", highlight=False)
    for s in split.sites:
        console.print(f"  {s.name}: {_state_range(s.states)}, {len(s.y_train)} training rows "
                      f"after SMOTE, {len(s.y_val)} validation rows", highlight=False)
    console.print(f"starting {n_sites} site agents; each site runs its own training job",
                  highlight=False)
    with tempfile.TemporaryDirectory(prefix="fedsilo-demo-") as staging:
        # Each channel is written once here and copied into its site by the site's set-up.
        channels = {site.name: write_site_channel(site, Path(staging) / site.name)
                    for site in split.sites}
        result = run_local_federation(
            output_dir, channels, APP_DIR, server_data=output_dir / "server", console=console,
            run_config={"penalty": penalty, "max-iter": max_iter, "num-server-rounds": rounds})
    global_model = set_model_params(new_model(penalty, max_iter), result.arrays)
    config = {"rounds": rounds, "n_sites": n_sites, "seed": seed,
              "n_providers": len(providers), "penalty": penalty, "max_iter": max_iter,
              "federation": "federation.toml"}
    return write_report(output_dir, split, providers, global_model, result.history,
                        config=config, started=started, console=console, source=source,
                        table_rows=_table_rows, extra={"jobs": _jobs(result)})


def prepare_work(output_dir: Path, entries: tuple[str, ...], data: Path | None, *,
                 n_sites: int, n_providers: int, seed: int
                 ) -> tuple[pd.DataFrame, dict[str, Any], FederatedSplit]:
    """The providers, their source and their split into sites and a test set, with the work
    directory claimed (its earlier ``entries`` removed) and the test set in ``server/``.

    The data come first: bad data fail before the work directory is touched.
    """
    providers, source = load_demo_data(data, n_providers=n_providers, seed=seed)
    split = prepare_federation(providers, n_sites=n_sites, seed=seed)
    claim_work_directory(output_dir, entries)
    write_test_set(split, output_dir / "server")
    return providers, source, split


def load_demo_data(data: Path | None, *, n_providers: int,
                   seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The providers table and what it came from: files with their SHA-256, or the seed."""
    if data is not None:
        return read_provider_data(data)
    return generate_providers(n_providers, seed), {"source": "synthetic", "seed": seed,
                                                   "n_providers": n_providers}



def _jobs(result: FederationResult) -> dict[str, dict[str, Any]]:
    """Each site's job: its name, status and where its model.tar.gz was left."""
    return {site: {"job": job.get("TrainingJobName"), "status": job.get("TrainingJobStatus"),
                   "artifact": job.get("ModelArtifacts", {}).get("S3ModelArtifacts")}
            for site, job in result.jobs.items()}


def write_report(output_dir: Path, split: FederatedSplit, providers: pd.DataFrame,
                 global_model: LogisticRegression, history: fl.server.History, *,
                 config: dict[str, Any], started: float, console: Console,
                 source: dict[str, Any],
                 table_rows: Callable[[dict[str, Any], FederatedSplit],
                                      dict[str, dict[str, float]]],
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare the federated model with pooled and lone-site training, write the models,
    history, plot and report.json, and print the comparison; the report is returned.

    ``source`` says what data the run used (``source``: ``synthetic`` with its seed, or the
    files read with their SHA-256).
    """
    fraud_share = float(providers[LABEL].mean())
    report, pooled = _compare(split, global_model, history, config, fraud_share)
    report["reading"] = READING.format(confidence=CONFIDENCE, threshold=THRESHOLD)
    report["shows"] = findings(report)
    report["config"] = config
    report["data"] = {
        "source": source,
        "n_providers": len(providers),
        "fraud_rate": float(providers[LABEL].mean()),
        "n_test": len(split.y_test),
        "sites": [{"name": s.name, "states": list(s.states), "n_train": len(s.y_train),
                   "n_validation": len(s.y_val)} for s in split.sites],
    }
    report.update(extra or {})
    report["files"] = _write_outputs(output_dir, global_model, history, report)
    report["files"]["pooled_model"] = str(save_model(output_dir / POOLED_MODEL_FILE, pooled))
    report["elapsed_s"] = round(time.monotonic() - started, 2)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    print_report(console, report, table_rows(report, split),
                 "On the server's test set (fraud is the positive class)",
                 "pooled: all sites' rows in one place, which the sites may not do; it and the "
                 "lone sites are trained to convergence, 'same effort' with the federation's "
                 "iterations only.", output_dir)
    return report


def print_report(console: Console, report: dict[str, Any], rows: dict[str, dict[str, Any]],
                 title: str, baselines: str, output_dir: Path) -> None:
    """The comparison table, how to read it, what it shows, the data's source and the files
    written (``report["files"]``)."""
    console.print(comparison_table(rows, title))
    console.print(f"{baselines} {report['reading']}", highlight=False)
    for line in report["shows"]:
        console.print(f"- {line}", highlight=False)
    console.print(f"data: {describe_source(report['data']['source'])}", highlight=False)
    console.print(f"wrote {', '.join(Path(f).name for f in report['files'].values())} to "
                  f"{output_dir} ({report['elapsed_s']:.1f} s)", highlight=False)


def _compare(split: FederatedSplit, global_model: LogisticRegression,
             history: fl.server.History, config: dict[str, Any],
             fraud_share: float) -> tuple[dict[str, Any], LogisticRegression]:
    """Every model's figures on the test set, and the converged pooled model."""
    penalty, seed = str(config["penalty"]), int(config["seed"])
    X, y = split.X_test, split.y_test

    def scored(model: LogisticRegression, *, intervals: bool = True) -> dict[str, Any]:
        return score(y, fraud_probability(model, X), seed=seed, intervals=intervals)

    pooled = pooled_model(split, penalty=penalty, converged=True)
    budget = pooled_model(split, rounds=int(config["rounds"]), penalty=penalty,
                          max_iter=int(config["max_iter"]))
    alone = site_models(split, penalty=penalty, converged=True)
    for result in alone:
        result.metrics = scored(result.model, intervals=False)
    per_round = [
        {"round": r, "loss": float(loss),
         **{name: float(dict(series)[r]) for name, series in history.metrics_centralized.items()
            if r in dict(series)}}
        for r, loss in history.losses_centralized
    ]
    return {
        "federated": scored(global_model),
        "pooled": scored(pooled.model),
        "pooled_same_effort": scored(budget.model, intervals=False),
        "always_legitimate": score(y, baseline_scores(len(y), fraud_share), seed=seed),
        "sites": {result.name: result.metrics for result in alone},
        "mean_site": mean_metrics(alone),
        "rounds": per_round,
    }, pooled.model


def findings(report: dict[str, Any]) -> list[str]:
    """What the comparison shows, read off the figures and nothing more: whether the federated
    and pooled intervals overlap, how the federated model ranks against the lone sites, and
    its accuracy against flagging nobody."""
    fed, pooled, nobody = report["federated"], report["pooled"], report["always_legitimate"]
    shown = []
    for key, label in (("roc_auc", "ROC-AUC"), ("average_precision", "PR-AUC")):
        (f_low, f_high), (p_low, p_high) = fed[f"{key}_ci"], pooled[f"{key}_ci"]
        overlap = f_low <= p_high and p_low <= f_high
        shown.append(
            f"{label}: federated {fed[key]:.3f}, pooled {pooled[key]:.3f}; the intervals "
            + ("overlap, so this test set does not tell the two apart" if overlap else
               f"do not overlap: the {'federated' if fed[key] > pooled[key] else 'pooled'} "
               "model ranks better"))
    sites = report["sites"]
    beaten = sum(fed["roc_auc"] > figures["roc_auc"] for figures in sites.values())
    shown.append(f"the federated model's ROC-AUC is above {beaten} of the {len(sites)} sites' "
                 "own models")
    relation = "above" if fed["accuracy"] > nobody["accuracy"] else "not above"
    shown.append(f"at the threshold the federated model's accuracy ({fed['accuracy']:.3f}) is "
                 f"{relation} flagging nobody ({nobody['accuracy']:.3f})")
    return shown


def describe_source(source: dict[str, Any]) -> str:
    """One line on what the data came from: the seed, or the files with their SHA-256."""
    if source["source"] == "synthetic":
        return f"synthetic, {source['n_providers']} providers drawn with seed {source['seed']}"
    files = ", ".join(f"{Path(f['path']).name} (sha256 {f['sha256'][:12]}...)"
                      for f in source["files"].values())
    return f"{source['source']} from {source['path']}: {files}"


def _write_outputs(output_dir: Path, model: LogisticRegression, history: fl.server.History,
                   report: dict[str, Any]) -> dict[str, str]:
    model_path = save_model(output_dir / "model.joblib", model)
    history_path = output_dir / "history.json"
    history_path.write_text(json.dumps(history.to_dict(), indent=2) + "\n")
    series = {"loss": history.losses_centralized, **history.metrics_centralized}
    baseline = report["always_legitimate"]
    reference = {name: baseline[name] for name in series if name in baseline}
    plot_path = plot_history(series, output_dir / "metrics.png",  # type: ignore[arg-type]
                             reference=reference)
    return {"model": str(model_path), "history": str(history_path), "plot": str(plot_path),
            "report": str(output_dir / "report.json")}


def _table_rows(report: dict[str, Any], split: FederatedSplit) -> dict[str, dict[str, Any]]:
    rows = {"federated (FedAvg)": report["federated"], "pooled": report["pooled"],
            "pooled, same effort": report["pooled_same_effort"]}
    for site in split.sites:
        rows[f"{site.name} alone"] = report["sites"][site.name]
    rows["mean of lone sites"] = report["mean_site"]
    rows["always legitimate"] = report["always_legitimate"]
    return rows


def _state_range(states: tuple[str, ...]) -> str:
    if len(states) <= 3:
        return "states " + ", ".join(states)
    return f"{len(states)} states {states[0]} to {states[-1]}"
