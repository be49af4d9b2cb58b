"""``fedsilo federate``: run a federation through site agents, as federation.toml describes;
``fedsilo status``: how a federation run is going, from any terminal."""

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
    resume: Annotated[bool, typer.Option(
        "--resume", help="Go on with the run whose orchestrator stopped: its last round "
                         "checkpoint, its site jobs still running.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the server log.")] = False,
) -> None:
    """Start the server, launch a training job at each site, federate, save, clean up."""
    from fedsilo.deploy.errors import DeployError
    from fedsilo.deploy.federation_config import load_federation_config
    from fedsilo.deploy.orchestrator import run_federation

    setup_logging(verbose)
    console = make_console()
    try:
        result = run_federation(load_federation_config(absolute(config)), console,
                                resume=resume)
    except KeyboardInterrupt as exc:
        console.print("interrupted: the federation server stopped and every job still running "
                      "was asked to stop", highlight=False)
        raise typer.Exit(code=INTERRUPTED) from exc
    except JobError as exc:
        report_job_error(console, exc)
        fail(f"site {exc.site} failed: job {exc.job} {exc.job_status}")
    except (DeployError, OSError, ValueError) as exc:
        fail(f"federation failed: {exc}")
    if result.metrics:
        figures = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        console.print(f"final model, the server's evaluation: {figures}", highlight=False)
    for name, job in result.jobs.items():
        artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts", "-")
        console.print(f"  {name}: {job['TrainingJobStatus']}, {artifact}", highlight=False)
    console.print(f"wrote {', '.join(result.files.values())} ({result.elapsed_s:.1f} s)",
                  highlight=False)


def status(
    config: Annotated[Path, typer.Argument(help="The federation.toml of the run.")],
) -> None:
    """Show a federation run's state: round, figures, each site's job (read from disk)."""
    import time

    from fedsilo.deploy.errors import DeployError
    from fedsilo.deploy.federation_config import load_federation_config
    from fedsilo.deploy.run_state import read_run_state, run_is_alive

    try:
        state = read_run_state(load_federation_config(absolute(config)).output)
    except (DeployError, OSError, ValueError) as exc:
        fail(str(exc))
    console = make_console()
    condition = str(state.get("status"))
    if condition == "running" and not run_is_alive(state):
        condition = "interrupted (its orchestrator is gone; go on with --resume)"
    console.print(f"run {state['run_id']}: {condition}, round {state.get('round', 0)}/"
                  f"{state.get('rounds', '?')}, updated {time.time() - state['updated']:.0f} s "
                  "ago", highlight=False)
    if state.get("error"):
        console.print(f"  error: {escape(str(state['error']))}", highlight=False)
    if state.get("app"):
        console.print(f"  app {state['app']['digest']} ({state['app']['server']})",
                      highlight=False)
    if state.get("metrics"):
        console.print("  " + "  ".join(f"{k} {v:.4f}" for k, v in state["metrics"].items()),
                      highlight=False)
    for site, job in state.get("jobs", {}).items():
        console.print(f"  {site}: {job.get('name')} {job.get('status', '?')} "
                      f"({job.get('secondary', '')})", highlight=False)
