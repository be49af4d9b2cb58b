"""``fedsilo federate``: run a federation through site agents, as federation.toml describes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fedsilo.cli._output import INTERRUPTED, absolute, fail, make_console, setup_logging
from fedsilo.deploy.errors import JobError


def report_job_error(console: Console, error: JobError) -> None:
    """The site's reason, then what the site let us read of the job's log."""
    console.print(f"[bold red]site {escape(error.site)} failed:[/] job {escape(error.job)} "
                  f"{error.job_status}: {escape(error.reason)}", highlight=False)
    if error.log_tail:
        console.print(f"last lines of the job's log ({len(error.log_tail)}):", highlight=False)
        for line in error.log_tail:
            console.print(f"  | {escape(line)}", highlight=False)
    elif error.job_status == "Failed":
        console.print("the site does not share its job logs (logs:GetLogEvents); ask its "
                      "owner for the log named above", highlight=False)


def federate(
    config: Annotated[Path, typer.Argument(help="The federation.toml to run.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the server log.")] = False,
) -> None:
    """Start the server, launch a training job at each site, federate, save, clean up."""
    from fedsilo.deploy.errors import DeployError
    from fedsilo.deploy.federation_config import load_federation_config
    from fedsilo.deploy.orchestrator import run_federation

    setup_logging(verbose)
    console = make_console()
    try:
        result = run_federation(load_federation_config(absolute(config)), console)
    except KeyboardInterrupt as exc:
        console.print("interrupted: the federation server stopped and every job still running "
                      "was asked to stop", highlight=False)
        raise typer.Exit(code=INTERRUPTED) from exc
    except JobError as exc:
        report_job_error(console, exc)
        fail(f"site {exc.site} failed: job {exc.job} {exc.job_status}")
    except (DeployError, OSError, ValueError) as exc:
        fail(f"federation failed: {exc}")
    figures = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    console.print(f"final model on the server's test set: {figures}", highlight=False)
    for name, job in result.jobs.items():
        artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts", "-")
        console.print(f"  {name}: {job['TrainingJobStatus']}, {artifact}", highlight=False)
    console.print(f"wrote {', '.join(result.files.values())} ({result.elapsed_s:.1f} s)",
                  highlight=False)
