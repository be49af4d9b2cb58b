"""``fedsilo site``: lay out a site, decide whom it trusts, give it data and code, serve it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from fedsilo.cli._output import absolute, fail, pem_fingerprint, setup_logging
from fedsilo.deploy.errors import DeployError

app = typer.Typer(help="A data owner's site: its directories, trust, channels, code and agent.",
                  no_args_is_help=True)

SiteDir = Annotated[Path, typer.Argument(help="The site's directory.")]


def _fingerprints(keys: list[Path], certs: list[Path]) -> dict[str, list[str]]:
    return {"Key": [pem_fingerprint(p) for p in keys],
            "Certificate": [pem_fingerprint(p, certificate_only=True) for p in certs]}


def _site(directory: Path) -> Any:
    """The site at ``directory`` (absolute), refused with one line unless it is one."""
    from fedsilo.deploy.site import SiteLayout

    site = SiteLayout(absolute(directory))
    try:
        site.config()
    except DeployError as exc:
        fail(str(exc))
    return site


def _directory(path: Path, what: str) -> Path:
    path = absolute(path)
    if not path.is_dir():
        fail(f"{path} is not a directory; give {what}")
    return path


def _inside(site: Any, base: Path, relative: str, what: str) -> Path:
    """``base/relative`` inside the site, or a one-line usage error (absolute, '..', links)."""
    try:
        return Path(site.inside(base, relative, what))
    except DeployError as exc:
        fail(str(exc), code=2)


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
    allow_code_upload: Annotated[bool, typer.Option(
        help="Let the launch role upload apps (code:PutCode); they run once approved.")
    ] = False,
    node_config: Annotated[list[str], typer.Option(
        help="KEY=VALUE the site gives its jobs' Context (e.g. partition-id=0).")] = [],  # noqa: B006
    isolate_jobs: Annotated[bool, typer.Option(
        help="Run each job in a filesystem of its own paths only (--no-isolate-jobs: jobs read "
             "what the agent's user can; for machines without user namespaces).")] = True,
) -> None:
    """Create a site: channels/, code/, artifacts/, jobs/, policy/, keys/ and tls/."""
    from fedsilo.deploy.site import init_site

    try:
        site = init_site(absolute(directory), name, trusted=_fingerprints(trust_key, trust_cert),
                         host=host, port=port, tls_hosts=tuple(tls_host), allow_logs=allow_logs,
                         allow_code_upload=allow_code_upload,
                         node_config=dict(_setting(item) for item in node_config),
                         isolate_jobs=isolate_jobs)
    except (DeployError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"site {name} laid out in {directory}")
    typer.echo(f"  launch role   {site.launch_role_arn()}")
    typer.echo(f"  give callers  {site.ca_path} (the agent's CA)")


def _setting(item: str) -> tuple[str, bool | int | float | str]:
    """``KEY=VALUE`` with VALUE read as a number or true/false where it is one."""
    import json

    key, sep, text = item.partition("=")
    if not sep or not key:
        fail(f"--node-config takes KEY=VALUE, got {item!r}", code=2)
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return key, value if isinstance(value, bool | int | float | str) else text


@app.command()
def approve(
    directory: SiteDir,
    app_: Annotated[str | None, typer.Argument(
        metavar="APP", help="An app archive, an app directory, or a sha256 digest.")] = None,
    signer: Annotated[list[Path], typer.Option(
        help="A public key or certificate PEM: apps it signs may run here.")] = [],  # noqa: B006
) -> None:
    """Let an uploaded app run at this site: by its digest, or by who signed it."""
    from fedsilo.deploy.app_approval import approve_app, trust_signer
    from fedsilo.deploy.app_archive import pack_app, sha256_hex
    from fedsilo.deploy.identity import load_public_key

    site = _site(directory)
    if app_ is None and not signer:
        fail("name an app (archive, directory or sha256 digest) or a --signer", code=2)
    try:
        if app_ is not None:
            path = absolute(Path(app_))
            if path.is_dir():
                digest = pack_app(path).digest
            elif path.is_file():
                digest = sha256_hex(path.read_bytes())
            else:
                digest = app_
            typer.echo(f"approved {approve_app(site, digest)}")
        for pem in signer:
            key = load_public_key(absolute(pem).read_bytes())
            typer.echo(f"trusted signer {trust_signer(site, key)}")
    except (DeployError, OSError) as exc:
        fail(str(exc))


@app.command()
def trust(
    directory: SiteDir,
    key: Annotated[list[Path], typer.Option(help="Public key or certificate PEM.")] = [],  # noqa: B006
    cert: Annotated[list[Path], typer.Option(help="Certificate PEM, pinned.")] = [],  # noqa: B006
) -> None:
    """Let more principals assume the site's launch role."""
    from fedsilo.deploy.site import add_trusted

    site = _site(directory)
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
    site = _site(directory)
    source = _directory(source, "the directory whose files become the channel")
    target = _inside(site, site.channels, channel, "channel")
    if target.exists():
        fail(f"channel {channel} exists already at {target}")
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging)
        staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        fail(f"copying {source} into {target}: {exc}")
    typer.echo(f"channel {channel}: {sum(1 for _ in target.rglob('*'))} files")


@app.command("add-code")
def add_code(
    directory: SiteDir,
    source: Annotated[Path, typer.Argument(help="Directory with the program files.")],
    name: Annotated[str, typer.Option(help="Path of the tarball in code/.")] = "source.tar.gz",
) -> None:
    """Pack a program directory into the site's code store as a source tarball."""
    from fedsilo.deploy.archive import pack_directory

    site = _site(directory)
    program = _directory(source, "the program files")
    target = _inside(site, site.code, name, "tarball")
    pack_directory(program, target)
    typer.echo(f"code store: {target} (from {program})")


@app.command()
def serve(
    directory: SiteDir,
    host: Annotated[str | None, typer.Option(help="Override site.json's host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override site.json's port.")] = None,
) -> None:
    """Run the site agent (HTTPS only) until interrupted."""
    from fedsilo.deploy.agent import serve as serve_agent

    setup_logging(True)
    try:
        serve_agent(_site(directory), host=host, port=port)
    except (DeployError, OSError) as exc:
        fail(str(exc))


@app.command()
def openapi(directory: SiteDir) -> None:
    """Print the agent's OpenAPI description (JSON)."""
    from fedsilo.deploy.agent import openapi_document

    typer.echo(openapi_document(_site(directory)))


@app.command()
def audit(
    directory: SiteDir,
    last: Annotated[int, typer.Option(help="Show only the last N calls (0: all).")] = 0,
    raw: Annotated[bool, typer.Option("--json", help="Print the JSON lines as stored.")] = False,
) -> None:
    """Show the agent's audit log: every call, who made it, what was decided and why."""
    import json

    from fedsilo.deploy.audit import read_audit

    entries = list(read_audit(_site(directory).audit_path))
    for entry in entries[-last:] if last > 0 else entries:
        if raw:
            typer.echo(json.dumps(entry))
            continue
        checks = "; ".join(f"{c['action']} {c['resource']} {c['decision']}"
                           + (f" by {c['statement']}" if c["statement"] else "")
                           for c in entry["checks"]) or "-"  # type: ignore[attr-defined]
        who = f"{entry['principal'] or '-'} ({entry['session'] or '-'})"
        job = f" job {entry['job']}" if entry["job"] else ""
        typer.echo(f"{entry['time']} {entry['source'] or '-'} {entry['method']} {entry['path']} "
                   f"{entry['status']} {who}: {checks}{job}")
