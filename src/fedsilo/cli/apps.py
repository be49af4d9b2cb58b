"""``fedsilo app``: start an app from a shipped example, pack it, sign it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

import fedsilo
from fedsilo.cli._output import absolute, fail
from fedsilo.deploy.errors import DeployError

app = typer.Typer(help="Federation apps: a site program and a server function in a directory.",
                  no_args_is_help=True)

EXAMPLES = Path(fedsilo.__file__).parent / "examples"
AppDir = Annotated[Path, typer.Argument(help="The app's directory.")]


@app.command()
def new(
    directory: Annotated[Path, typer.Argument(help="Directory to create.")],
    example: Annotated[str, typer.Option(help="The shipped app to start from.")] = "fraud",
) -> None:
    """Copy a shipped example app (client.py, server.py, ...) into a new directory."""
    source = EXAMPLES / example / "app"
    if not source.is_dir():
        known = sorted(p.parent.name for p in EXAMPLES.glob("*/app"))
        fail(f"no example app {example!r}; the shipped ones: {', '.join(known)}", code=2)
    target = absolute(directory)
    if target.exists():
        fail(f"{target} exists already; give a new directory")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    typer.echo(f"app {example} copied to {directory}")


@app.command()
def pack(
    directory: AppDir,
    output: Annotated[Path | None, typer.Option(
        help="Write the archive here (default: <sha256>.tar.gz in the current directory).")
    ] = None,
) -> None:
    """Pack the app as the federation ships it and print its SHA-256 (what sites approve)."""
    from fedsilo.deploy.app_archive import pack_app

    try:
        archive = pack_app(absolute(directory))
    except DeployError as exc:
        fail(str(exc))
    target = absolute(output) if output is not None else Path.cwd() / f"{archive.digest}.tar.gz"
    target.write_bytes(archive.data)
    typer.echo(f"sha256:{archive.digest}  {target}")


@app.command()
def sign(
    directory: AppDir,
    key: Annotated[Path, typer.Option(help="The publisher's private key (PEM).")],
    output: Annotated[Path, typer.Option(help="Where to write the signature.")] = Path("app.sig"),
) -> None:
    """Sign the app's digest; sites that trust the key run it without listing its digest."""
    from fedsilo.deploy.app_approval import sign_app
    from fedsilo.deploy.app_archive import pack_app
    from fedsilo.deploy.identity import load_private_key

    try:
        archive = pack_app(absolute(directory))
        signature = sign_app(load_private_key(absolute(key)), archive.digest)
    except (DeployError, OSError, ValueError) as exc:
        fail(str(exc))
    absolute(output).write_bytes(signature)
    typer.echo(f"signed sha256:{archive.digest} -> {output}")
