"""``fedsilo demo``: the Medicare-provider fraud federation, end to end on this machine."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedsilo.common.logger import update_console_handler


def demo(
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Directory for model.joblib, history.json and metrics.png.")
    ] = Path("fedsilo-demo"),
    rounds: Annotated[int, typer.Option(min=1, help="Federated rounds.")] = 5,
    sites: Annotated[int, typer.Option(min=2, max=10, help="Sites, one process each.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the data and the partitions.")] = 0,
    providers: Annotated[int, typer.Option(min=500, help="Providers in the data.")] = 5400,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the server log.")] = False,
) -> None:
    """Federate a fraud model over sites that keep their data; compare it with the alternatives."""
    from fedsilo.examples.fraud.demo import run_demo

    update_console_handler(level=logging.INFO if verbose else logging.WARNING,
                           timestamps=True)
    console = Console()
    try:
        run_demo(output, rounds=rounds, n_sites=sites, seed=seed, n_providers=providers,
                 console=console)
    except Exception as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        raise typer.Exit(code=1) from exc
