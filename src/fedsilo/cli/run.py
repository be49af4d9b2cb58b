"""``fedsilo run``: run a Flower-style app directory in simulation on this machine."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger("fedsilo")

DEFAULT_NUM_SUPERNODES = 2


def run(
    app_dir: Annotated[Path, typer.Argument(
        help="The app directory (its pyproject.toml names the ServerApp and ClientApp).")
    ] = Path("."),
    federation: Annotated[str | None, typer.Argument(
        help="A federation of [tool.flwr.federations] (default: the one named default).")
    ] = None,
    run_config: Annotated[str | None, typer.Option(
        "--run-config", help='Overrides of the app\'s run config: "key=value key2=value2" '
                             "(TOML values) or a .toml file.")] = None,
    backend: Annotated[str, typer.Option(
        help="local (a process pool, default) or ray.")] = "local",
    num_workers: Annotated[int | None, typer.Option(
        min=1, help="Nodes running at once (default: one per core).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the app in simulation; the ServerApp runs in the current directory."""
    from fedsilo.app.project import AppProjectError, load_app_project, parse_run_config
    from fedsilo.simulation.run_app import run_simulation

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if backend not in ("local", "ray"):
        raise typer.BadParameter("choose local or ray", param_hint="--backend")
    try:
        project = load_app_project(app_dir)
        name, options = project.federation(federation)
        config = dict(project.run_config)
        if run_config:
            config.update(parse_run_config(run_config, known=project.run_config))
        nodes = options.get("num-supernodes", DEFAULT_NUM_SUPERNODES)
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise AppProjectError(f"federation {name!r}: options.num-supernodes must be a "
                                  f"positive integer, got {nodes!r}")
    except AppProjectError as exc:
        typer.echo(f"fedsilo run: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    # The app's packages are imported from its directory, as they are; nothing is installed.
    sys.path.insert(0, str(project.root))
    typer.echo(f"Running {project.root.name} in federation {name!r}: {nodes} virtual nodes, "
               f"{backend} backend; the ServerApp writes into {Path.cwd()}")
    try:
        run_simulation(project.serverapp, project.clientapp, nodes, backend_name=backend,  # type: ignore[arg-type]
                       run_config=config, num_workers=num_workers)
    except Exception as exc:  # the app's own error: one line, the traceback in the log
        log.debug("the run failed", exc_info=True)
        typer.echo(f"fedsilo run: {type(exc).__name__}: {exc} (--verbose shows where)",
                   err=True)
        raise typer.Exit(code=1) from exc
