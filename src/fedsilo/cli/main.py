"""The ``fedsilo`` command: one sub-command per module."""

from __future__ import annotations

import typer

from fedsilo import __version__
from fedsilo.cli import certs, client, demo, federate, run, server, simulate, site

app = typer.Typer(
    name="fedsilo",
    help="Federated learning across data silos.",
    no_args_is_help=True,
    add_completion=False,
)
app.command(name="demo")(demo.demo)
app.add_typer(site.app, name="site")
app.add_typer(certs.app, name="certs")
app.command(name="federate")(federate.federate)
app.command(name="server")(server.server)
app.command(name="simulate")(simulate.simulate)
app.command(name="run")(run.run)
app.command(name="client")(client.client)


@app.command()
def version() -> None:
    """Print fedsilo's version."""
    typer.echo(__version__)


if __name__ == "__main__":
    app()
