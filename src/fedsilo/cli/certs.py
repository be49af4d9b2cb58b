"""``fedsilo certs``: the federation's CA, the server's certificate, callers' certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedsilo.cli._output import absolute, fail, pem_fingerprint

app = typer.Typer(help="Certificates for the federation's TLS and identities.",
                  no_args_is_help=True)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the files.")],
    name: Annotated[str, typer.Option(help="The federation's name, in the CA's subject.")] = (
        "federation"),
    host: Annotated[list[str], typer.Option(
        help="Names and IPs the server certificate is valid for.")] = ["127.0.0.1", "localhost"],  # noqa: B006
) -> None:
    """Create ca.pem/ca.key and server.pem/server.key (for the federation server)."""
    from fedsilo.deploy.certs import write_authority, write_server_certificate

    directory = absolute(directory)
    if (directory / "ca.key").exists():
        fail(f"{directory} already holds a CA (ca.key); choose another directory", code=2)
    ca = write_authority(directory, name)
    cert, key = write_server_certificate(directory, ca, "server", tuple(host))
    typer.echo(f"CA {directory / 'ca.pem'}; server certificate {cert} for {', '.join(host)}")


@app.command()
def server(
    directory: Annotated[Path, typer.Argument(help="The directory holding ca.pem and ca.key.")],
    host: Annotated[list[str], typer.Option(
        help="Names and IPs the server certificate is valid for (the public address the "
             "sites dial among them).")] = ["127.0.0.1", "localhost"],  # noqa: B006
) -> None:
    """Issue server.pem/server.key again from the CA, for other names (a public address)."""
    from fedsilo.deploy.certs import load_authority, write_server_certificate

    cert, _ = write_server_certificate(directory, load_authority(directory), "server",
                                       tuple(host))
    typer.echo(f"server certificate {cert} for {', '.join(host)}")


@app.command("self-signed")
def self_signed(
    directory: Annotated[Path, typer.Argument(help="Where to write <name>.pem and <name>.key.")],
    name: Annotated[str, typer.Argument(help="The site's name (file names and subject).")],
) -> None:
    """A site's own client certificate, signed by no CA: the federation enrols it by its key.

    A SageMaker site keeps the pair in its identity channel (S3); the federation's operator
    names the .pem as the site's client_certificate.
    """
    from cryptography import x509

    from fedsilo.deploy.certs import create_self_signed_client_certificate, write_pair
    from fedsilo.deploy.identity import fingerprint

    cert_pem, key = create_self_signed_client_certificate(name)
    cert, key_path = write_pair(directory, name, cert_pem, key)
    parsed = x509.load_pem_x509_certificate(cert_pem)
    typer.echo(f"{cert} ({key_path})")
    typer.echo(f"  key fingerprint  {fingerprint(parsed.public_key())}")  # type: ignore[arg-type]


@app.command()
def client(
    directory: Annotated[Path, typer.Argument(help="The directory holding ca.pem and ca.key.")],
    name: Annotated[str, typer.Argument(help="The client's name (file names and subject).")],
) -> None:
    """Issue a client certificate <name>.pem/<name>.key from the CA; print its fingerprints."""
    from cryptography import x509

    from fedsilo.deploy.certs import load_authority, write_client_certificate
    from fedsilo.deploy.identity import fingerprint

    directory = absolute(directory)
    if not (directory / "ca.key").is_file() or not (directory / "ca.pem").is_file():
        fail(f"{directory} holds no CA (ca.pem and ca.key); create one with "
             "'fedsilo certs init DIR'")
    try:
        authority = load_authority(directory)
    except (ValueError, TypeError, OSError) as exc:
        fail(f"cannot load the CA in {directory}: {exc}")
    cert, key = write_client_certificate(directory, authority, name)
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    typer.echo(f"{cert} ({key})")
    typer.echo(f"  key fingerprint          {fingerprint(parsed.public_key())}")  # type: ignore[arg-type]
    typer.echo(f"  certificate fingerprint  {fingerprint(parsed)}")


@app.command("fingerprint")
def show_fingerprint(
    path: Annotated[Path, typer.Argument(help="A PEM certificate or public key.")],
) -> None:
    """Print the fingerprint a site's trust policy names this key by."""
    typer.echo(pem_fingerprint(path))
