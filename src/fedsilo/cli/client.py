"""``fedsilo client APP_DIR``: run the app's ClientApp as a node of a federation server."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer


def client(
    app_dir: Annotated[Path, typer.Argument(help="The app directory.")] = Path("."),
    server: Annotated[str, typer.Option(
        "--server", help="host:port of the federation server.")] = "127.0.0.1:8080",
    node_config: Annotated[str, typer.Option(
        "--node-config", help='This node\'s settings, e.g. "partition-id=0 num-partitions=3".')
    ] = "",
    root_certificates: Annotated[Path | None, typer.Option(
        "--root-certificates", exists=True, dir_okay=False,
        help="The CA certificate (PEM) the server's certificate is checked against.")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Connect without TLS (the server must serve plain text).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Join a federation server as a node running the app's ClientApp."""
    from fedsilo.app.project import AppProjectError, load_app_project, parse_run_config
    from fedsilo.client import start_client
    from fedsilo.clientapp import ClientApp, ClientAppClient, node_context
    from fedsilo.simulation.run_app import load_app

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if root_certificates is None and not insecure:
        typer.echo("fedsilo client: give --root-certificates CA.pem, or --insecure to connect "
                   "without TLS", err=True)
        raise typer.Exit(code=2)
    try:
        project = load_app_project(app_dir)
        config = parse_run_config(node_config)
        sys.path.insert(0, str(project.root))  # the app's packages, as they are
        app = load_app(project.clientapp, ClientApp)
    except (AppProjectError, ValueError, TypeError) as exc:
        typer.echo(f"fedsilo client: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    node_id = int(config.get("partition-id", 0)) + 1  # type: ignore[arg-type]
    context = node_context(node_id, config, project.run_config, run_id=1)
    start_client(server_address=server, client=ClientAppClient(app, context),
                 root_certificates=None if root_certificates is None
                 else root_certificates.read_bytes(),
                 insecure=insecure)
