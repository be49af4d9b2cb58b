"""``fedsilo server APP_DIR``: the app's ServerApp on a gRPC server; nodes join with
``fedsilo client APP_DIR``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from fedsilo.app import Context, RecordDict
from fedsilo.app.project import AppProjectError, load_app_project, parse_run_config

log = logging.getLogger("fedsilo.server")


def read_tls_directory(directory: Path) -> tuple[bytes, bytes, bytes]:
    """``ca.pem``, ``server.pem`` and ``server.key`` from a directory (``fedsilo certs init``)."""
    names = ("ca.pem", "server.pem", "server.key")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise AppProjectError(f"{directory} lacks {', '.join(missing)}; create them with "
                              f"`fedsilo certs init {directory}`")
    ca, cert, key = ((directory / n).read_bytes() for n in names)
    return ca, cert, key


def serve_app(app_dir: Path, address: str, certificates: Path | None,
              run_config: str | None) -> None:
    """Load the app directory's ServerApp and serve it at ``address``."""
    from fedsilo.serverapp import ServerApp, serve_server_app
    from fedsilo.simulation.run_app import load_app

    try:
        project = load_app_project(app_dir)
        config = dict(project.run_config)
        if run_config:
            config.update(parse_run_config(run_config, known=project.run_config))
        tls = read_tls_directory(certificates) if certificates is not None else None
        sys.path.insert(0, str(project.root))  # the app's packages, as they are
        app = load_app(project.serverapp, ServerApp)
    except (AppProjectError, ValueError, TypeError) as exc:
        typer.echo(f"fedsilo server: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if tls is None:
        log.warning("serving without TLS: pass --certificates DIR to encrypt the connections")
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config=config)
    serve_server_app(app, context, server_address=address, certificates=tls,
                     on_listening=lambda port: typer.echo(f"serving {project.root.name} on "
                                                          f"port {port}"))
