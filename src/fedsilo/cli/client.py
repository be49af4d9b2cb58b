"""``fedsilo client APP_DIR``: run the app's ClientApp as a node of a federation server."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from fedsilo.cli._output import absolute, fail, setup_logging


def client(
    app_dir: Annotated[Path, typer.Argument(help="The app directory.")] = Path("."),
    server: Annotated[str, typer.Option(
        "--server", help="host:port of the federation server.")] = "127.0.0.1:8080",
    node_config: Annotated[str, typer.Option(
        "--node-config", help='This node\'s settings, e.g. "partition-id=0 num-partitions=3".')
    ] = "",
    root_certificates: Annotated[Path | None, typer.Option(
        "--root-certificates", dir_okay=False,
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

    setup_logging(True)
    if verbose:
        logging.getLogger("fedsilo").setLevel(logging.DEBUG)
    if root_certificates is None and not insecure:
        fail("give --root-certificates CA.pem, or --insecure to connect without TLS", code=2)
    ca_pem = None
    if root_certificates is not None:
        try:
            ca_pem = absolute(root_certificates).read_bytes()
        except OSError as exc:
            fail(f"cannot read --root-certificates {absolute(root_certificates)}: "
                 f"{exc.strerror or exc}", code=2)
    try:
        project = load_app_project(absolute(app_dir))
        config = parse_run_config(node_config)
        sys.path.insert(0, str(project.root))  # the app's packages, as they are
        app = load_app(project.clientapp, ClientApp)
    except (AppProjectError, ValueError, TypeError) as exc:
        fail(str(exc), code=2)
    node_id = int(config.get("partition-id", 0)) + 1  # type: ignore[arg-type]
    context = node_context(node_id, config, project.run_config, run_id=1)
    start_client(server_address=server, client=ClientAppClient(app, context),
                 root_certificates=ca_pem, insecure=insecure)
