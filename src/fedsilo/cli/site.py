"""``fedsilo site``: lay out a site, decide whom it trusts, give it data and code, serve it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from fedsilo.common.logger import update_console_handler
from fedsilo.deploy.errors import DeployError

app = typer.Typer(help="A data owner's site: its directories, trust, channels, code and agent.",
                  no_args_is_help=True)

SiteDir = Annotated[Path, typer.Argument(help="The site's directory.")]


def _fingerprints(keys: list[Path], certs: list[Path]) -> dict[str, list[str]]:
    from cryptography import x509

    from fedsilo.deploy.identity import fingerprint, load_public_key

    out: dict[str, list[str]] = {"Key": [], "Certificate": []}
    for path in keys:
        out["Key"].append(fingerprint(load_public_key(path.read_bytes())))
    for path in certs:
        out["Certificate"].append(fingerprint(x509.load_pem_x509_certificate(path.read_bytes())))
    return out


@app.command()
def init(
    directory: SiteDir,
    name: Annotated[str, typer.Option(help="The site's name (lowercase, digits, '-').")],
    trust_key: Annotated[list[Path], typer.Option(
        help="A public key or certificate PEM whose key may assume the launch role.")] = [],  # noqa: B006
    trust_cert: Annotated[list[Path], typer.Option(
        help="A certificate PEM that may assume the launch role (pinned as is).")] = [],  # noqa: B006
    host: Annotated[str, typer.Option(help="Address the agent listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the agent listens on.")] = 8443,
    tls_host: Annotated[list[str], typer.Option(
        help="Names and IPs in the agent's certificate.")] = ["127.0.0.1", "localhost"],  # noqa: B006
    allow_logs: Annotated[bool, typer.Option(
        help="Let the launch role read job logs (logs:GetLogEvents).")] = False,
    isolate_jobs: Annotated[bool, typer.Option(
        help="Run jobs in user and mount namespaces that hide the site's parent directory.")
    ] = False,
) -> None:
    """Create a site: channels/, code/, artifacts/, jobs/, policy/, keys/ and tls/."""
    from fedsilo.deploy.site import init_site

    try:
        site = init_site(directory, name, trusted=_fingerprints(trust_key, trust_cert),
                         host=host, port=port, tls_hosts=tuple(tls_host), allow_logs=allow_logs,
                         isolate_jobs=isolate_jobs)
    except DeployError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"site {name} laid out in {directory}")
    typer.echo(f"  launch role   {site.launch_role_arn()}")
    typer.echo(f"  give callers  {site.ca_path} (the agent's CA)")


@app.command()
def trust(
    directory: SiteDir,
    key: Annotated[list[Path], typer.Option(help="Public key or certificate PEM.")] = [],  # noqa: B006
    cert: Annotated[list[Path], typer.Option(help="Certificate PEM, pinned.")] = [],  # noqa: B006
) -> None:
    """Let more principals assume the site's launch role."""
    from fedsilo.deploy.site import SiteLayout, add_trusted

    site = SiteLayout(directory)
    for kind, values in _fingerprints(key, cert).items():
        for value in values:
            add_trusted(site, kind, value)
            typer.echo(f"trusted {kind} {value}")


@app.command("add-channel")
def add_channel(
    directory: SiteDir,
    channel: Annotated[str, typer.Argument(help="Channel directory name under channels/.")],
    source: Annotated[Path, typer.Argument(help="Directory whose files become the channel.")],
) -> None:
    """Copy a directory of data into the site's channels."""
    from fedsilo.deploy.site import SiteLayout

    site = SiteLayout(directory)
    target = site.inside(site.channels, channel, "channel")
    if target.exists():
        raise typer.BadParameter(f"channel {channel} exists already")
    shutil.copytree(source, target)
    typer.echo(f"channel {channel}: {sum(1 for _ in target.rglob('*'))} files")


@app.command("add-code")
def add_code(
    directory: SiteDir,
    source: Annotated[Path | None, typer.Argument(
        help="Directory with the program files (default: the shipped fraud program).")] = None,
    name: Annotated[str, typer.Option(help="Path of the tarball in code/.")] = "source.tar.gz",
) -> None:
    """Pack a program directory into the site's code store as a source tarball."""
    from fedsilo.deploy.archive import pack_directory
    from fedsilo.deploy.sandbox import FRAUD_PROGRAM_DIR
    from fedsilo.deploy.site import SiteLayout

    site = SiteLayout(directory)
    site.config()
    program = source if source is not None else FRAUD_PROGRAM_DIR
    if not program.is_dir():
        raise typer.BadParameter(f"{program} is not a directory")
    target = site.inside(site.code, name, "tarball")
    pack_directory(program, target)
    typer.echo(f"code store: {target} (from {program})")


@app.command()
def serve(
    directory: SiteDir,
    host: Annotated[str | None, typer.Option(help="Override site.json's host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override site.json's port.")] = None,
) -> None:
    """Run the site agent (HTTPS only) until interrupted."""
    import logging

    from fedsilo.deploy.agent import serve as serve_agent
    from fedsilo.deploy.site import SiteLayout

    update_console_handler(level=logging.INFO, timestamps=True)
    try:
        serve_agent(SiteLayout(directory), host=host, port=port)
    except DeployError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc


@app.command()
def openapi(directory: SiteDir) -> None:
    """Print the agent's OpenAPI description (JSON)."""
    from fedsilo.deploy.agent import openapi_document
    from fedsilo.deploy.site import SiteLayout

    typer.echo(openapi_document(SiteLayout(directory)))
