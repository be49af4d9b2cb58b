"""``fedsilo simulate``: the fraud federation with 100 sites as virtual clients."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedsilo.cli._output import absolute, make_console, setup_logging


def simulate(
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Directory for the sites' data, model.joblib, history.json, "
                               "metrics.png and report.json.")] = Path("fedsilo-simulate"),
    rounds: Annotated[int, typer.Option(min=1, help="Federated rounds.")] = 5,
    sites: Annotated[int, typer.Option(min=2, help="Sites, each a virtual client.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the data and the partitions.")] = 0,
    providers: Annotated[int, typer.Option(
        min=1000, help="Providers in the data; about 400 per site.")] = 40_000,
    backend: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    workers: Annotated[int | None, typer.Option(
        min=1, help="Sites training at once (default: one per core).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the server log.")] = False,
) -> None:
    """Simulate the fraud federation over many sites on this machine; compare the alternatives."""
    from fedsilo.examples.fraud.simulate import run_simulation

    if backend not in ("local", "ray"):
        raise typer.BadParameter("choose local or ray", param_hint="--backend")
    setup_logging(verbose)
    console = make_console()
    try:
        run_simulation(absolute(output), rounds=rounds, n_sites=sites, seed=seed,
                       n_providers=providers, console=console, backend=backend, num_workers=workers)  # type: ignore[arg-type]
    except Exception as exc:
        console.print(f"[bold red]simulation failed:[/] {exc}")
        raise typer.Exit(code=1) from exc
