"""A site job that runs a Flower app's ClientApp against the federation server.

``fedsilo federate`` packs a Flower app (``[tool.flwr.app.components]`` in its
``pyproject.toml``) with a one-line entry that calls :func:`main`; the site runs it as the
job's program, in the unpacked app. :func:`main` reads the job's Context
(``FEDSILO_CONTEXT``: the site's ``node_config`` and the federation's ``run_config``), loads
the app's ClientApp and joins the server named by ``--server-address``, trusting the
federation CA (the ``federation`` channel's ``ca.pem``, else ``FEDSILO_ROOT_CERTIFICATES``)
and presenting the ``identity`` channel's ``client.pem``/``client.key`` where the site has
one (mutual TLS).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _root_certificates() -> bytes:
    """The federation CA's PEM (bytes: a str would be taken for a file's path)."""
    channel = os.environ.get("SM_CHANNEL_FEDERATION")
    if channel and os.path.isfile(os.path.join(channel, "ca.pem")):
        return Path(channel, "ca.pem").read_bytes()
    pem = os.environ.get("FEDSILO_ROOT_CERTIFICATES")
    if not pem:
        raise SystemExit("no federation CA: neither a federation channel with ca.pem nor "
                         "FEDSILO_ROOT_CERTIFICATES")
    return pem.encode()


def _node_id(node_config: dict[str, Any]) -> int:
    """Node ``partition-id + 1`` where the site sets a partition (as in a simulation), else 1."""
    try:
        return int(node_config.get("partition-id", 0)) + 1
    except (TypeError, ValueError):
        return 1


def main(argv: list[str] | None = None) -> None:
    """Run the ClientApp of the app in the working directory as this site's node."""
    from fedsilo.app.project import load_app_project
    from fedsilo.client import start_client
    from fedsilo.clientapp import ClientApp, ClientAppClient, node_context
    from fedsilo.simulation.run_app import load_app

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-address", required=True)
    parser.add_argument("--max-wait-time", type=float, default=None)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    context_data = json.loads(Path(os.environ["FEDSILO_CONTEXT"]).read_text())
    node_config: dict[str, Any] = context_data["node_config"]
    project = load_app_project(Path.cwd())
    sys.path.insert(0, str(project.root))  # the app's packages, as they are
    app = load_app(project.clientapp, ClientApp)
    context = node_context(_node_id(node_config), node_config, context_data["run_config"])
    identity = node_config.get("channel-identity")
    start_client(server_address=args.server_address, client=ClientAppClient(app, context),
                 root_certificates=_root_certificates(),
                 client_certificate=(os.path.join(identity, "client.pem"),
                                     os.path.join(identity, "client.key"))
                 if identity else None,
                 max_wait_time=args.max_wait_time)
