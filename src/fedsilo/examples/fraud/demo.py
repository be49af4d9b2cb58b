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
      history.json, metrics.png  the server's figures per round
      report.json                the comparison below, the data, the jobs and the timings

After the last round the final global model is scored on the server's test set next to the
two alternatives: all sites' data pooled in one place (which the sites may not do) and each
site training alone.
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
from fedsilo.examples.fraud.server_side import evaluation_metrics

__all__ = ["DemoError", "FederationError", "JobError", "run_demo"]

# What a run writes at the top of its directory; a rerun removes exactly these first.
APP_DIR = Path(__file__).parent / "app"  # the fraud app: site program and server function
RUN_ENTRIES = ("federation.toml", "certs", "server", "sites", "logs", "run", "model.joblib",
               "history.json", "metrics.png", "report.json")


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
) -> dict[str, Any]:
    """Run the federation through site agents on this machine; return the report.

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
    claim_work_directory(output_dir, RUN_ENTRIES)

    providers = generate_providers(n_providers, seed)
    split = prepare_federation(providers, n_sites=n_sites, seed=seed)
    write_test_set(split, output_dir / "server")
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
    config = {"rounds": rounds, "n_sites": n_sites, "seed": seed, "n_providers": n_providers,
              "penalty": penalty, "max_iter": max_iter, "federation": "federation.toml"}
    return write_report(output_dir, split, providers, global_model, result.history,
                        config=config, started=started, console=console,
                        table_rows=_table_rows, extra={"jobs": _jobs(result)})


def _jobs(result: FederationResult) -> dict[str, dict[str, Any]]:
    """Each site's job: its name, status and where its model.tar.gz was left."""
    return {site: {"job": job.get("TrainingJobName"), "status": job.get("TrainingJobStatus"),
                   "artifact": job.get("ModelArtifacts", {}).get("S3ModelArtifacts")}
            for site, job in result.jobs.items()}


def write_report(output_dir: Path, split: FederatedSplit, providers: pd.DataFrame,
                 global_model: LogisticRegression, history: fl.server.History, *,
                 config: dict[str, Any], started: float, console: Console,
                 table_rows: Callable[[dict[str, Any], FederatedSplit],
                                      dict[str, dict[str, float]]],
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare the federated model with pooled and lone-site training, write the model,
    history, plot and report.json, and print the comparison; the report is returned."""
    report = _compare(split, global_model, history, int(config["rounds"]),
                      str(config["penalty"]), int(config["max_iter"]))
    report["config"] = config
    report["data"] = {
        "n_providers": len(providers),
        "fraud_rate": float(providers[LABEL].mean()),
        "n_test": len(split.y_test),
        "sites": [{"name": s.name, "states": list(s.states), "n_train": len(s.y_train),
                   "n_validation": len(s.y_val)} for s in split.sites],
    }
    report.update(extra or {})
    report["files"] = _write_outputs(output_dir, global_model, history, report)
    report["elapsed_s"] = round(time.monotonic() - started, 2)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    console.print(comparison_table(
        table_rows(report, split), "On the server's test set (fraud is the positive class)",
        caption="pooled: all sites' rows in one place, which the sites may not do"))
    console.print(f"wrote {', '.join(Path(f).name for f in report['files'].values())} to "
                  f"{output_dir} ({report['elapsed_s']:.1f} s)", highlight=False)
    return report


def _compare(split: FederatedSplit, global_model: LogisticRegression,
             history: fl.server.History, rounds: int, penalty: str,
             max_iter: int) -> dict[str, Any]:
    pooled = pooled_model(split, rounds=rounds, penalty=penalty, max_iter=max_iter)
    alone = site_models(split, rounds=rounds, penalty=penalty, max_iter=max_iter)
    per_round = [
        {"round": r, "loss": float(loss),
         **{name: float(dict(series)[r]) for name, series in history.metrics_centralized.items()
            if r in dict(series)}}
        for r, loss in history.losses_centralized
    ]
    return {
        "federated": evaluation_metrics(global_model, split.X_test, split.y_test),
        "pooled": pooled.metrics,
        "sites": {result.name: result.metrics for result in alone},
        "mean_site": mean_metrics(alone),
        "rounds": per_round,
    }


def _write_outputs(output_dir: Path, model: LogisticRegression, history: fl.server.History,
                   report: dict[str, Any]) -> dict[str, str]:
    model_path = save_model(output_dir / "model.joblib", model)
    history_path = output_dir / "history.json"
    history_path.write_text(json.dumps(history.to_dict(), indent=2) + "\n")
    series = {"loss": history.losses_centralized, **history.metrics_centralized}
    plot_path = plot_history(series, output_dir / "metrics.png")  # type: ignore[arg-type]
    return {"model": str(model_path), "history": str(history_path), "plot": str(plot_path),
            "report": str(output_dir / "report.json")}


def _table_rows(report: dict[str, Any], split: FederatedSplit) -> dict[str, dict[str, float]]:
    rows = {"federated (FedAvg)": report["federated"], "pooled": report["pooled"]}
    for site in split.sites:
        rows[f"{site.name} alone"] = report["sites"][site.name]
    rows["mean of lone sites"] = report["mean_site"]
    return rows


def _state_range(states: tuple[str, ...]) -> str:
    if len(states) <= 3:
        return "states " + ", ".join(states)
    return f"{len(states)} states {states[0]} to {states[-1]}"
