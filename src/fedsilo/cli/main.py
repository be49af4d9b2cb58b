"""The ``fedsilo`` command: one sub-command per module.

``main`` is the console script. It runs the commands without click's own error printing, so
that whatever goes wrong ends as one line on stderr: usage errors with exit code 2, failures
with 1, Ctrl-C with 130 ("interrupted"), never a traceback (``FEDSILO_TRACEBACK=1`` shows it).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from fedsilo import __version__
from fedsilo.cli import (
    apps,
    aws,
    certs,
    client,
    demo,
    federate,
    fraud_data,
    run,
    server,
    simulate,
    site,
)
from fedsilo.cli._output import COMMAND, INTERRUPTED, error_line

app = typer.Typer(
    name="fedsilo",
    help="Federated learning across data silos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(name="demo")(demo.demo)
app.add_typer(site.app, name="site")
app.add_typer(certs.app, name="certs")
app.add_typer(aws.app, name="aws")
app.command(name="federate")(federate.federate)
app.command(name="status")(federate.status)
app.add_typer(apps.app, name="app")
app.command(name="server")(server.server)
app.command(name="simulate")(simulate.simulate)
app.command(name="run")(run.run)
app.command(name="client")(client.client)
app.command(name="fraud-data")(fraud_data.fraud_data)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fedsilo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Federated learning across data silos."""


@app.command()
def version() -> None:
    """Print fedsilo's version."""
    typer.echo(__version__)


GROUPS = ("site", "certs", "aws", "app")  # sub-commands that have sub-commands of their own


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    args = sys.argv[1:] if argv is None else list(argv)
    words = [a for a in args[:2] if not a.startswith("-")]
    COMMAND[:] = ["fedsilo", *words[:2 if words[:1] and words[0] in GROUPS else 1]]
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="fedsilo", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return INTERRUPTED
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # a usage error
            typer.echo(error_line(exc.format_message()), err=True)
            return int(exc.exit_code)
        if os.environ.get("FEDSILO_TRACEBACK"):
            raise
        typer.echo(error_line(f"{type(exc).__name__}: {exc}"), err=True)
        return 1
    return result if isinstance(result, int) else 0


def console_script() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_script()
