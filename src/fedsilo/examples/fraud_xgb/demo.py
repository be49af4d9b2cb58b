"""Federated XGBoost on the fraud sites, across site agents on this machine:
``fedsilo demo --app fraud-xgb``.

The same providers, sites and server test set as the logistic-regression demo (the same
seed gives the same rows); each site's job runs the app's ClientApp on its own rows, the
server bags their trees. The federated booster is then compared on the test set with XGBoost
trained on all sites' rows pooled (which the sites may not do) and on each site's rows alone,
every one with the same parameters and as many trees as the federated model. The work
directory holds what the other demo's does, with ``model.json`` (the federated booster),
``pooled-model.json``, ``metrics.png`` (the server's figures by round) and ``report.json``;
``run/final_arrays.npz`` is the booster's JSON as the federation kept it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from rich.console import Console

from fedsilo.common.config import flatten_dict
from fedsilo.deploy.sandbox import run_local_federation
from fedsilo.examples.fraud.data import LABEL
from fedsilo.examples.fraud.demo import READING, findings, prepare_work, print_report
from fedsilo.examples.fraud.plot import plot_history
from fedsilo.examples.fraud.prepare import SiteData, write_site_channel
from fedsilo.examples.fraud.scoring import CONFIDENCE, THRESHOLD, baseline_scores, score
from fedsilo.examples.fraud_xgb import APP_DIR

__all__ = ["run_demo"]

RUN_ENTRIES = ("federation.toml", "certs", "server", "sites", "logs", "run", "model.json",
               "pooled-model.json", "metrics.png", "report.json")


def app_params() -> dict[str, object]:
    """The booster's parameters as the app's ``[tool.flwr.app.config]`` sets them."""
    config = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    params = config["config"]["params"]
    return {key.replace("-", "_"): value for key, value in params.items()}


def run_demo(output_dir: Path, rounds: int = 5, n_sites: int = 3, seed: int = 0,
             n_providers: int = 5400, console: Console | None = None, *,
             data: Path | None = None) -> dict[str, Any]:
    """Federate the XGBoost app over ``n_sites`` site agents, compare, and return the report
    (also written as ``report.json``): ``federated``, ``pooled``, ``sites`` (each alone),
    ``always_legitimate``, ``rounds`` (the server's figures per round), ``shows``, ``jobs``,
    ``data``, ``config`` and ``files``."""
    if rounds < 1 or n_sites < 1:
        raise ValueError("rounds and n_sites must be at least 1")
    started = time.monotonic()
    console = console if console is not None else Console()
    output_dir = Path(os.path.abspath(Path(output_dir).expanduser()))
    providers, source, split = prepare_work(output_dir, RUN_ENTRIES, data, n_sites=n_sites,
                                            n_providers=n_providers, seed=seed)
    console.print(f"{len(providers)} providers, {providers[LABEL].mean():.1%} fraudulent; the "
                  f"server keeps {len(split.y_test)} of them to test; {n_sites} sites grow "
                  "trees on their own rows", highlight=False)
    params = {**app_params(), "seed": seed}
    run_config = {"num-server-rounds": rounds, **flatten_dict({"params": {"seed": seed}})}
    with tempfile.TemporaryDirectory(prefix="fedsilo-xgb-") as staging:
        channels = {site.name: write_site_channel(site, Path(staging) / site.name)
                    for site in split.sites}
        result = run_local_federation(
            output_dir, channels, APP_DIR, server="", program="", console=console,
            server_data=output_dir / "server", run_config=run_config, min_sites=n_sites)
    federated = xgb.Booster(params=params)
    federated.load_model(bytearray(np.concatenate(result.arrays).tobytes()))
    trees = federated.num_boosted_rounds()

    def grown(rows: list[SiteData]) -> xgb.Booster:
        X = np.concatenate([s.X_train for s in rows])
        y = np.concatenate([s.y_train for s in rows])
        return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=trees)

    test = xgb.DMatrix(split.X_test)

    def scored(booster: xgb.Booster, *, intervals: bool = True) -> dict[str, Any]:
        return score(split.y_test, booster.predict(test), seed=seed, intervals=intervals)

    pooled = grown(split.sites)
    fraud_share = float(providers[LABEL].mean())
    report: dict[str, Any] = {
        "federated": scored(federated),
        "pooled": scored(pooled),
        "sites": {s.name: scored(grown([s]), intervals=False) for s in split.sites},
        "always_legitimate": score(split.y_test, baseline_scores(len(split.y_test),
                                                                 fraud_share), seed=seed),
        "rounds": [{"round": r, "loss": loss,
                    **{k: dict(v)[r] for k, v in result.history.metrics_centralized.items()
                       if r in dict(v)}}
                   for r, loss in result.history.losses_centralized],
        "reading": READING.format(confidence=CONFIDENCE, threshold=THRESHOLD),
    }
    report["shows"] = findings(report)
    report["config"] = {"rounds": rounds, "n_sites": n_sites, "seed": seed, "trees": trees,
                        "params": params, "federation": "federation.toml"}
    report["data"] = {"source": source, "n_providers": len(providers),
                      "fraud_rate": fraud_share, "n_test": len(split.y_test)}
    report["jobs"] = {site: {"job": job.get("TrainingJobName"),
                             "status": job.get("TrainingJobStatus")}
                      for site, job in result.jobs.items()}
    federated.save_model(output_dir / "model.json")
    pooled.save_model(output_dir / "pooled-model.json")
    history = result.history
    series = {"loss": history.losses_centralized, **history.metrics_centralized}
    nobody = report["always_legitimate"]
    plot = plot_history(series, output_dir / "metrics.png",  # type: ignore[arg-type]
                        reference={k: nobody[k] for k in series if k in nobody})
    report["files"] = {"model": str(output_dir / "model.json"),
                       "pooled_model": str(output_dir / "pooled-model.json"),
                       "plot": str(plot), "report": str(output_dir / "report.json")}
    report["federation_files"] = result.files
    report["elapsed_s"] = round(time.monotonic() - started, 2)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    rows = {"federated (FedXgbBagging)": report["federated"], "pooled": report["pooled"],
            **{f"{name} alone": figures for name, figures in report["sites"].items()},
            "always legitimate": report["always_legitimate"]}
    print_report(console, report, rows, "On the server's test set (fraud is the positive "
                 f"class); every booster has {trees} trees", "pooled: all sites' rows in one "
                 "place, which the sites may not do.", output_dir)
    return report
