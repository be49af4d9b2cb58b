"""A whole cross-site federation on one machine: certificates, sites, agents, federation.toml.

:func:`lay_out_federation` builds, for any app, under one work directory::

    certs/                     the federation CA, the server's and the orchestrator's certs
    server/                    the server's own data (e.g. a test set; never given to a site)
    sites/<site>/              one site each (see fedsilo.deploy.site): its channel
                               channels/train, a launch role that trusts the orchestrator's
                               certificate and lets it upload apps, the app's digest on its
                               approved list, its own client certificate, enrolled by the server
    federation.toml            the run: app, server, identity, [[sites]]
    run/                       (after the run) final_arrays.npz, history.json, federation.json

and :class:`SiteAgentProcess` runs each site's agent as its own process, as separate
organisations would. :func:`run_local_federation` does all of it and runs the federation.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from fedsilo.deploy.app_approval import approve_app
from fedsilo.deploy.app_archive import pack_app
from fedsilo.deploy.certs import (
    write_authority,
    write_client_certificate,
    write_server_certificate,
)
from fedsilo.deploy.client import SiteClient
from fedsilo.deploy.federation_config import load_federation_config
from fedsilo.deploy.identity import fingerprint, load_public_key
from fedsilo.deploy.orchestrator import FederationResult, run_federation
from fedsilo.deploy.site import SiteLayout, init_site, namespaces_available

__all__ = [
    "SiteAgentProcess",
    "WorkDirectoryError",
    "claim_work_directory",
    "free_port",
    "lay_out_federation",
    "run_local_federation",
]


class SiteAgentProcess:
    """``fedsilo site serve`` for one site, in a process of its own, on ``port``."""

    def __init__(self, site: SiteLayout, port: int, log_path: Path) -> None:
        self.site = site
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> SiteAgentProcess:
        """Start the agent and wait until it answers over TLS (RuntimeError if it exits)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fedsilo.cli.main", "site", "serve", str(self.site.root),
                 "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # A site is its own organisation: a Ctrl-C meant for the orchestrator does
                # not reach it; the orchestrator stops its jobs, then this agent (stop()).
                start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the agent of {self.site.name} exited: "
                                       f"{self.log_path.read_text()[-1500:]}")
                try:
                    if client.health()["site"] == self.site.name:
                        return self
                except ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the agent of {self.site.name} did not answer within "
                                       f"{timeout:.0f} s")
                time.sleep(0.1)
        finally:
            client.close()

    def client(self) -> SiteClient:
        return SiteClient(self.endpoint, self.site.ca_path, site=self.site.name)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the agent (its jobs are the orchestrator's to stop, not the agent's)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(grace)


def lay_out_federation(
    work: Path,
    channels: dict[str, Path],
    app_dir: Path,
    ports: dict[str, int],
    *,
    server: str = "server:server_fn",
    program: str = "client.py",
    run_config: dict[str, Any] | None = None,
    server_data: Path | None = None,
    node_configs: dict[str, dict[str, Any]] | None = None,
    approve: bool = True,
    rounds: int | None = None,
    min_sites: int = 0,
    round_timeout: float = 60.0,
    connect_timeout: float = 60.0,
) -> Path:
    """Create certificates and sites for ``channels`` (site name to a channel directory to
    copy in) and a ``federation.toml`` that runs the app in ``app_dir``; return its path.

    ``server`` and ``program`` empty: neither is named (a Flower app's own ServerApp and
    ClientApp run). ``server_data`` is copied to ``work/server`` for the app's server side;
    ``node_configs`` gives sites their own ``node_config`` values; ``approve`` puts the app's
    digest on every site's approved list (else the sites refuse it); ``ports`` gives each
    agent's port.
    """
    isolate = namespaces_available()  # jobs see no other site, where the machine allows it
    certs = work / "certs"
    ca = write_authority(certs, "federation")
    write_server_certificate(certs, ca, "server")
    orchestrator_cert, _ = write_client_certificate(certs, ca, "orchestrator")
    key_fingerprint = fingerprint(load_public_key(orchestrator_cert.read_bytes()))
    digest = pack_app(app_dir).digest
    sites_toml = []
    for name, channel in channels.items():
        # One owner runs every site here, so the orchestrator may read the jobs' logs.
        site = init_site(work / "sites" / name, name, trusted={"Key": [key_fingerprint]},
                         port=ports[name], isolate_jobs=isolate, allow_logs=True,
                         allow_code_upload=True, node_config=(node_configs or {}).get(name))
        shutil.copytree(channel, site.channels / "train")
        if approve:
            approve_app(site, digest)
        sites_toml.append(f"""
[[sites]]
name = "{name}"
launcher = "local"
endpoint = "https://127.0.0.1:{ports[name]}"
ca = "sites/{name}/tls/ca.pem"
role = "{site.launch_role_arn()}"
execution_role = "{site.execution_role_arn()}"
output = "fl"
max_runtime = 900
channels = {{ train = "train", identity = "identity" }}
client_certificate = "sites/{name}/tls/client.pem"
""")
    server_lines = [f"rounds = {rounds}"] if rounds is not None else []
    if server_data is not None:
        if server_data.resolve() != (work / "server").resolve():
            shutil.copytree(server_data, work / "server")
        server_lines.append('data = "server"')
    config = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in (run_config or {}).items())
    path = work / "federation.toml"
    path.write_text(f"""# {len(channels)} sites on this machine: fedsilo federate {path.name}
[app]
dir = {json.dumps(str(app_dir.resolve()))}
{f'server = "{server}"' if server else ""}
{f'program = "{program}"' if program else ""}
config = {{ {config} }}

[server]
address = "127.0.0.1:0"
round_timeout = {round_timeout}
connect_timeout = {connect_timeout}
certificates = "certs"
output = "run"
{chr(10).join(server_lines)}

[strategy]
min_sites = {min_sites}

[identity]
key = "certs/orchestrator.key"
certificate = "certs/orchestrator.pem"
""" + "".join(sites_toml))
    return path


def run_local_federation(
    work: Path,
    channels: dict[str, Path],
    app_dir: Path,
    *,
    console: Console | None = None,
    **layout: Any,
) -> FederationResult:
    """Lay the federation out under ``work`` (``layout``: :func:`lay_out_federation`'s
    options), start one agent process per site, run it.

    The agents are stopped at the end whatever happens; the sites' directories, with their
    job records and ``model.tar.gz`` artifacts, stay under ``work/sites``.
    """
    ports = {name: free_port() for name in channels}
    toml = lay_out_federation(work, channels, app_dir, ports, **layout)
    agents = [SiteAgentProcess(SiteLayout(work / "sites" / name), port,
                               work / "logs" / f"agent-{name}.log")
              for name, port in ports.items()]
    try:
        for agent in agents:
            agent.start()
        return run_federation(load_federation_config(toml), console)
    finally:
        for agent in agents:
            agent.stop()


class WorkDirectoryError(RuntimeError):
    """A work directory that cannot be used; the message says why."""


WORK_MARKER = ".fedsilo-demo"


def claim_work_directory(work: Path, entries: tuple[str, ...]) -> None:
    """Make ``work`` ready for a run on this machine: new, empty, or an earlier run's (whose
    ``entries`` are removed first); a directory holding anything else is left alone."""
    if work.exists() and not work.is_dir():
        raise WorkDirectoryError(f"{work} exists and is not a directory")
    work.mkdir(parents=True, exist_ok=True)
    if (work / WORK_MARKER).is_file():
        for name in entries:
            entry = work / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
    elif any(work.iterdir()):
        raise WorkDirectoryError(f"{work} is not empty and holds no earlier demo; give an "
                                 "empty or new directory with --output")
    (work / WORK_MARKER).write_text("fedsilo demo work directory; a rerun replaces it\n")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (another process may still take it first)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
