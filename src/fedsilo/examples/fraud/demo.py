"""The fraud federation end to end on one machine, and how it compares with the alternatives.

``run_demo`` lays the data out as it would lie in a real deployment, one directory per party:

    output_dir/sites/<site>/train/   the site's channel (training and validation rows)
    output_dir/sites/<site>/model/   the site's model after the federation
    output_dir/sites/<site>/client.log
    output_dir/server/test.csv       the server's test set

then starts the federation server on 127.0.0.1 in a thread of this process and one client
process per site, each reading only its own channel. After the last round it scores the final
global model on the server's test set next to the two alternatives (all sites' data pooled in
one place, which the sites may not do, and each site training alone) and writes
``model.joblib``, ``history.json``, ``metrics.png`` and ``report.json`` to ``output_dir``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from sklearn.linear_model import LogisticRegression

import fedsilo as fl
from fedsilo.examples.fraud.baselines import mean_metrics, pooled_model, site_models
from fedsilo.examples.fraud.data import LABEL, generate_providers
from fedsilo.examples.fraud.launch import ClientProcessError, SiteProcess
from fedsilo.examples.fraud.model import new_model, save_model
from fedsilo.examples.fraud.plot import plot_history
from fedsilo.examples.fraud.prepare import (
    FederatedSplit,
    load_test_set,
    prepare_federation,
    write_site_channel,
    write_test_set,
)
from fedsilo.examples.fraud.report import RoundProgress, comparison_table
from fedsilo.examples.fraud.server_side import build_strategy, evaluation_metrics

__all__ = ["ClientProcessError", "DemoError", "run_demo"]

ROUND_TIMEOUT_S = 60.0  # one client's answer to one instruction
CLIENT_CONNECT_S = 30.0  # how long a client keeps retrying an unreachable server
CLIENT_EXIT_S = 20.0  # how long clients may take to exit once the server is done


class DemoError(RuntimeError):
    """The federation did not complete; the message says which party failed and why."""


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
    """Run the federation on this machine; return the report (also in ``report.json``).

    The report holds ``federated``, ``pooled`` and ``mean_site`` metric dicts, ``sites``
    (site name to metrics), ``rounds`` (the server's figures per round), ``data``,
    ``config``, ``files`` and ``elapsed_s``. Raises :class:`ClientProcessError` naming the
    site when a client fails, :class:`DemoError` when the server fails or runs too long.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if n_sites < 1:
        raise ValueError(f"n_sites must be at least 1, got {n_sites}")
    started = time.monotonic()
    console = console if console is not None else Console()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    providers = generate_providers(n_providers, seed)
    split = prepare_federation(providers, n_sites=n_sites, seed=seed)
    channels = {site.name: write_site_channel(site, output_dir / "sites" / site.name / "train")
                for site in split.sites}
    write_test_set(split, output_dir / "server")
    X_test, y_test = load_test_set(output_dir / "server")
    console.print(f"{len(providers)} providers, {providers[LABEL].mean():.1%} fraudulent; the "
                  f"server keeps {len(y_test)} of them to test", highlight=False)
    for s in split.sites:
        console.print(f"  {s.name}: {_state_range(s.states)}, {len(s.y_train)} training rows "
                      f"after SMOTE, {len(s.y_val)} validation rows", highlight=False)

    global_model = new_model(penalty, max_iter)
    address = f"127.0.0.1:{_free_port()}"
    with RoundProgress(console, rounds) as progress:
        strategy = build_strategy(global_model, X_test, y_test, n_sites,
                                  on_round=progress.on_round)
        history = _federate(strategy, address, rounds, output_dir, channels, penalty, max_iter)

    config = {"rounds": rounds, "n_sites": n_sites, "seed": seed, "n_providers": n_providers,
              "penalty": penalty, "max_iter": max_iter, "server_address": address}
    return write_report(output_dir, split, providers, global_model, history, config=config,
                        started=started, console=console, table_rows=_table_rows)


def write_report(output_dir: Path, split: FederatedSplit, providers: pd.DataFrame,
                 global_model: LogisticRegression, history: fl.server.History, *,
                 config: dict[str, Any], started: float, console: Console,
                 table_rows: Callable[[dict[str, Any], FederatedSplit],
                                      dict[str, dict[str, float]]]) -> dict[str, Any]:
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
    report["files"] = _write_outputs(output_dir, global_model, history, report)
    report["elapsed_s"] = round(time.monotonic() - started, 2)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    console.print(comparison_table(
        table_rows(report, split), "On the server's test set (fraud is the positive class)",
        caption="pooled: all sites' rows in one place, which the sites may not do"))
    console.print(f"wrote {', '.join(Path(f).name for f in report['files'].values())} to "
                  f"{output_dir} ({report['elapsed_s']:.1f} s)", highlight=False)
    return report


def _federate(
    strategy: fl.server.strategy.FedAvg,
    address: str,
    rounds: int,
    output_dir: Path,
    channels: dict[str, Path],
    penalty: str,
    max_iter: int,
) -> fl.server.History:
    """Run the server in a thread and one client process per site; return the History."""
    server = _ServerThread(address, strategy, rounds, wait_timeout=ROUND_TIMEOUT_S)
    server.start()
    clients: list[SiteProcess] = []
    try:
        for name, channel in channels.items():
            site_dir = output_dir / "sites" / name
            clients.append(SiteProcess.launch(
                name, server_address=address, channel=channel, model_dir=site_dir / "model",
                log_path=site_dir / "client.log", penalty=penalty, max_iter=max_iter,
                max_wait_time=CLIENT_CONNECT_S))
        deadline = time.monotonic() + CLIENT_CONNECT_S + rounds * ROUND_TIMEOUT_S
        while not server.done.wait(0.1):
            for client in clients:
                client.check()
            if time.monotonic() > deadline:
                raise DemoError(f"the federation did not finish within "
                                f"{CLIENT_CONNECT_S + rounds * ROUND_TIMEOUT_S:.0f} s")
        if server.error is not None:
            raise DemoError(f"the federation server failed: {server.error}") from server.error
        for client in clients:
            client.wait(CLIENT_EXIT_S)
            client.check()
    finally:
        for client in clients:
            client.stop()
    assert server.history is not None
    return server.history


class _ServerThread(threading.Thread):
    """``fedsilo.server.start_server`` in a daemon thread, keeping its History or its error."""

    def __init__(self, address: str, strategy: fl.server.strategy.FedAvg, rounds: int,
                 wait_timeout: float) -> None:
        super().__init__(name="federation-server", daemon=True)
        self.address = address
        self.strategy = strategy
        self.rounds = rounds
        self.wait_timeout = wait_timeout
        self.history: fl.server.History | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.history = fl.server.start_server(
                server_address=self.address,
                config=fl.server.ServerConfig(num_rounds=self.rounds,
                                              round_timeout=ROUND_TIMEOUT_S),
                strategy=self.strategy,
                # Bounded, so that a server whose clients died does not wait for them for ever.
                client_manager=fl.server.SimpleClientManager(wait_timeout=self.wait_timeout),
            )
        except BaseException as exc:  # reported by _federate in the caller's thread
            self.error = exc
        finally:
            self.done.set()


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
