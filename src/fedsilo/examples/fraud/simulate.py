"""The fraud federation with many sites, as a simulation on one machine.

Where ``run_demo`` starts one client process per site and federates them over gRPC,
``run_simulation`` registers every site as a virtual client: a site is built from its
channel on disk (``output_dir/sites/<site>/train``) only when it is sampled, in a worker
process (or a Ray actor), trains, answers and is dropped. The data lie as in the demo, the
server keeps its test set, and the report is the demo's: the federated model against pooled
data and against each site alone, in ``report.json``, ``history.json``, ``model.joblib``
and ``metrics.png``.

With more sites than states (25) each state holds several sites, cut from its providers
ordered by specialty (:func:`~fedsilo.examples.fraud.prepare.partition_providers`), so sites
differ in region, cost level, fraud schemes and specialty mix.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

import fedsilo as fl
import fedsilo.simulation
from fedsilo.examples.fraud.client import FraudClient
from fedsilo.examples.fraud.data import LABEL, generate_providers
from fedsilo.examples.fraud.demo import write_report
from fedsilo.examples.fraud.model import new_model
from fedsilo.examples.fraud.prepare import (
    FederatedSplit,
    load_site_channel,
    load_test_set,
    prepare_many_sites,
    write_site_channel,
    write_test_set,
)
from fedsilo.examples.fraud.report import RoundProgress
from fedsilo.examples.fraud.server_side import build_strategy

__all__ = ["run_simulation", "site_client"]

ROUND_TIMEOUT_S = 120.0  # one site's fit or evaluate


def site_client(cid: str, *, sites_dir: str, penalty: str, max_iter: int) -> fl.client.Client:
    """``client_fn`` of the simulation: site ``cid`` reads its own channel and no other."""
    site = load_site_channel(Path(sites_dir) / cid / "train")
    return FraudClient(site, new_model(penalty, max_iter)).to_client()


def run_simulation(
    output_dir: Path,
    rounds: int = 5,
    n_sites: int = 100,
    seed: int = 0,
    n_providers: int = 40_000,
    console: Console | None = None,
    *,
    backend: Literal["local", "ray"] = "local",
    num_workers: int | None = None,
    penalty: str = "l2",
    max_iter: int = 10,
) -> dict[str, Any]:
    """Simulate the federation of ``n_sites`` sites; return the demo's report.

    Every site trains and evaluates in every round. ``n_providers`` must leave each site a
    few fraudulent providers: about 400 providers per site do.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    started = time.monotonic()
    console = console if console is not None else Console()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    providers = generate_providers(n_providers, seed)
    split = prepare_many_sites(providers, n_sites=n_sites, seed=seed)
    sites_dir = output_dir / "sites"
    for site in split.sites:
        write_site_channel(site, sites_dir / site.name / "train")
    write_test_set(split, output_dir / "server")
    X_test, y_test = load_test_set(output_dir / "server")
    sizes = [len(s.y_train) for s in split.sites]
    console.print(f"{len(providers)} providers, {providers[LABEL].mean():.1%} fraudulent, in "
                  f"{len(split.sites)} sites of {min(sizes)} to {max(sizes)} training rows "
                  f"(after SMOTE); the server keeps {len(y_test)} to test", highlight=False)

    global_model = new_model(penalty, max_iter)
    client_fn = functools.partial(site_client, sites_dir=str(sites_dir), penalty=penalty,
                                  max_iter=max_iter)
    with RoundProgress(console, rounds) as progress:
        strategy = build_strategy(global_model, X_test, y_test, len(split.sites),
                                  on_round=progress.on_round)
        history = fedsilo.simulation.start_simulation(
            client_fn=client_fn, clients_ids=[s.name for s in split.sites],
            config=fl.server.ServerConfig(num_rounds=rounds, round_timeout=ROUND_TIMEOUT_S),
            strategy=strategy, backend=backend, num_workers=num_workers)
    _check_complete(history, rounds, len(split.sites))

    config = {"rounds": rounds, "n_sites": len(split.sites), "seed": seed,
              "n_providers": n_providers, "penalty": penalty, "max_iter": max_iter,
              "backend": backend}
    source = {"source": "synthetic", "seed": seed, "n_providers": n_providers}
    return write_report(output_dir, split, providers, global_model, history, config=config,
                        started=started, console=console, source=source,
                        table_rows=_table_rows)


def _check_complete(history: fl.server.History, rounds: int, n_sites: int) -> None:
    """Every round must have trained: a round without results means sites failed."""
    trained = {r for r, _ in history.metrics_distributed_fit.get("train_loss", [])}
    missing = sorted(set(range(1, rounds + 1)) - trained)
    if missing:
        raise RuntimeError(f"no site finished training in round(s) {missing} of {n_sites} "
                           "sites; run with --verbose to see the sites' errors")


def _table_rows(report: dict[str, Any], split: FederatedSplit) -> dict[str, dict[str, float]]:
    """Federated, pooled, and the lone sites summed up: their mean, best and worst F1."""
    by_f1 = sorted(split.sites, key=lambda s: report["sites"][s.name]["f1"])
    worst, best = by_f1[0].name, by_f1[-1].name
    return {
        "federated (FedAvg)": report["federated"],
        "pooled": report["pooled"],
        "mean of lone sites": report["mean_site"],
        f"{best} alone (best)": report["sites"][best],
        f"{worst} alone (worst)": report["sites"][worst],
        "always legitimate": report["always_legitimate"],
    }
