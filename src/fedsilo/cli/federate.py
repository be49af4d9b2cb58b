"""``fedsilo federate``: run a federation through site agents, as federation.toml describes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fedsilo.common.logger import update_console_handler


def federate(
    config: Annotated[Path, typer.Argument(help="The federation.toml to run.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the server log.")] = False,
) -> None:
    """Start the server, launch a training job at each site, federate, save, clean up."""
    from fedsilo.deploy.errors import DeployError, JobError
    from fedsilo.deploy.federation_config import load_federation_config
    from fedsilo.deploy.orchestrator import run_federation

    update_console_handler(level=logging.INFO if verbose else logging.WARNING,
                           timestamps=True)
    console = Console()
    try:
        result = run_federation(load_federation_config(config), console)
    except JobError as exc:
        console.print(f"[bold red]site {escape(exc.site)} failed:[/] job {escape(exc.job)} "
                      f"{exc.job_status}: {escape(exc.reason)}", highlight=False)
        raise typer.Exit(code=1) from exc
    except (DeployError, OSError, ValueError) as exc:
        console.print(f"[bold red]federation failed:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code=1) from exc
    figures = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    console.print(f"final model on the server's test set: {figures}", highlight=False)
    for name, job in result.jobs.items():
        artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts", "-")
        console.print(f"  {name}: {job['TrainingJobStatus']}, {artifact}", highlight=False)
    console.print(f"wrote {', '.join(result.files.values())} ({result.elapsed_s:.1f} s)",
                  highlight=False)
