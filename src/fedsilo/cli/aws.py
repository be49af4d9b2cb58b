"""``fedsilo aws``: what a federation on AWS accounts needs, written out for the user to deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="AWS accounts for a federation: CloudFormation templates.",
                  no_args_is_help=True)


@app.command()
def templates(
    directory: Annotated[Path, typer.Argument(help="Where to write the templates.")] = Path(
        "aws-templates"),
) -> None:
    """Write data-owner.json (one stack per data owner) and federation-server.json."""
    from fedsilo.deploy.aws_templates import write_templates

    for path in write_templates(directory):
        typer.echo(str(path))
