"""A site on disk: the directories a data owner keeps, and ``init_site`` that lays them out.

::

    <site>/
      site.json            name, the agent's host and port
      channels/<name>/     data channels; jobs of this site read them, nothing serves them
      code/                source tarballs (client.py, utils.py, requirements.txt)
      artifacts/           job outputs: <OutputPath>/<job>/output/model.tar.gz
      jobs/<job>/          one job: record.json, output.log, code/, model/, output/
      policy/roles.json    the launch role (trust + permissions) and the execution role
      policy/apps.json     uploaded apps the site approved, by digest or trusted signer
      keys/signing.key     Ed25519 key that signs session credentials (owner-only)
      state/               the agent's own records: AssumeRole signatures already used
      audit/agent.jsonl    every call to the agent, one JSON line each, rotated
      tls/                 the site's CA (ca.pem, handed to callers), the agent's certificate,
                           client.pem: the site's own client certificate, for the federation
                           to enrol (its key is in channels/identity/, for the site's jobs)

Every path a request names is resolved against one of these directories by
:meth:`SiteLayout.inside`, which refuses absolute paths, ``..`` and links that lead out.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fedsilo.deploy.certs import (
    DEFAULT_HOSTS,
    create_self_signed_client_certificate,
    write_authority,
    write_pair,
    write_server_certificate,
)
from fedsilo.deploy.errors import NotFound, UnsafePathError, ValidationError
from fedsilo.deploy.identity import generate_signing_key, load_private_key, private_key_pem
from fedsilo.deploy.roles import launch_role_policy, role_arn, trust_policy

__all__ = [
    "EXECUTION_ROLE",
    "IDENTITY_CHANNEL",
    "LAUNCH_ROLE",
    "SiteLayout",
    "add_trusted",
    "init_site",
    "namespaces_available",
    "policy_allows",
    "policy_allows_logs",
    "trusted_principals",
    "write_roles",
]

LAUNCH_ROLE = "FL-kickoff-client-job"
IDENTITY_CHANNEL = "identity"
EXECUTION_ROLE = "service-role/FL-execution"
_SITE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class SiteLayout:
    """The directories of the site rooted at ``root`` (made absolute once, here)."""

    root: Path

    def __post_init__(self) -> None:
        # Jobs, agents and records outlive the caller's working directory: keep no relative path.
        object.__setattr__(self, "root", Path(os.path.abspath(Path(self.root).expanduser())))

    @property
    def config_path(self) -> Path:
        return self.root / "site.json"

    @property
    def channels(self) -> Path:
        return self.root / "channels"

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def roles_path(self) -> Path:
        return self.root / "policy" / "roles.json"

    @property
    def signing_key_path(self) -> Path:
        return self.root / "keys" / "signing.key"

    @property
    def state(self) -> Path:
        """The agent's own state (accepted AssumeRole signatures); owner-only."""
        return self.root / "state"

    @property
    def audit_path(self) -> Path:
        """The agent's audit log (JSON lines; rotations beside it); owner-only directory."""
        return self.root / "audit" / "agent.jsonl"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def ca_path(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def client_certificate_path(self) -> Path:
        """The site's client certificate (public), which a federation enrols."""
        return self.tls / "client.pem"

    def config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            raise NotFound(f"{self.root} is not a site (no site.json); create one with "
                           "'fedsilo site init'")
        return dict(json.loads(self.config_path.read_text()))

    @property
    def name(self) -> str:
        return str(self.config()["name"])

    def launch_role_arn(self) -> str:
        return role_arn(self.name, LAUNCH_ROLE)

    def execution_role_arn(self) -> str:
        return role_arn(self.name, EXECUTION_ROLE)

    def signing_key(self) -> Any:
        return load_private_key(self.signing_key_path)

    def inside(self, base: Path, relative: str, what: str) -> Path:
        """``base/relative``, refused unless it stays inside ``base`` once links are followed."""
        if not isinstance(relative, str) or not relative or "\x00" in relative:
            raise ValidationError(f"{what} must be a non-empty relative path")
        pure = PurePosixPath(relative)
        if pure.is_absolute() or relative.startswith("~") or re.match(r"^[A-Za-z]:", relative):
            raise UnsafePathError(f"{what} {relative!r} is absolute; give a path relative to "
                                  f"the site's {base.name}/ directory")
        if ".." in pure.parts:
            raise UnsafePathError(f"{what} {relative!r} contains '..'; paths stay inside the "
                                  f"site's {base.name}/ directory")
        candidate = base / pure
        resolved = candidate.resolve()
        if not resolved.is_relative_to(base.resolve()):
            raise UnsafePathError(f"{what} {relative!r} leads outside the site's {base.name}/ "
                                  "directory through a link")
        return candidate


def init_site(
    root: Path,
    name: str,
    *,
    trusted: dict[str, list[str]] | None = None,
    host: str = "127.0.0.1",
    port: int = 8443,
    tls_hosts: tuple[str, ...] = DEFAULT_HOSTS,
    allow_logs: bool = False,
    allow_code_upload: bool = False,
    max_session_s: int = 3600,
    isolate_jobs: bool = True,
    node_config: dict[str, Any] | None = None,
) -> SiteLayout:
    """Lay out a new site; ``trusted`` maps ``Key``/``Certificate`` to fingerprints.

    With no trusted principals the launch role exists but nobody can assume it until the
    site adds one (``fedsilo site trust``). ``isolate_jobs`` (the default) runs each job in a
    root filesystem of its own paths only (see :mod:`fedsilo.deploy.runner`); turning it off
    lets jobs read whatever the agent's user can, and ``site serve`` warns about it.
    ``allow_code_upload`` lets the launch role upload apps (``code:PutCode``), which still
    run only once approved; ``node_config`` holds values the site gives every job of its own
    (e.g. ``{"partition-id": 0}``), next to its name and channels.
    """
    if not _SITE_NAME.fullmatch(name):
        raise ValidationError(f"site name {name!r}: use 1 to 63 lowercase letters, digits, '-'")
    site = SiteLayout(Path(root))
    if site.config_path.exists():
        raise ValidationError(f"{root} is already a site ({site.config_path} exists)")
    for directory in (site.channels, site.code, site.artifacts, site.jobs,
                      site.roles_path.parent, site.signing_key_path.parent, site.state):
        directory.mkdir(parents=True, exist_ok=True)
    os.chmod(site.signing_key_path.parent, 0o700)
    os.chmod(site.state, 0o700)
    fd = os.open(site.signing_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(generate_signing_key()))
    ca = write_authority(site.tls, f"site {name}")
    write_server_certificate(site.tls, ca, "agent", tls_hosts)
    client_cert, client_key = create_self_signed_client_certificate(f"site {name}")
    write_pair(site.channels / IDENTITY_CHANNEL, "client", client_cert, client_key)
    site.client_certificate_path.write_bytes(client_cert)
    config: dict[str, Any] = {"name": name, "host": host, "port": port,
                              "isolate_jobs": isolate_jobs}
    if node_config:
        config["node_config"] = dict(node_config)
    site.config_path.write_text(json.dumps(config, indent=2) + "\n")
    write_roles(site, trusted or {}, allow_logs=allow_logs, allow_code_upload=allow_code_upload,
                max_session_s=max_session_s)
    return site


def namespaces_available() -> bool:
    """Whether this machine lets the agent run jobs in user, PID and mount namespaces."""
    from fedsilo.deploy.job_process import containment_available

    return containment_available()


def write_roles(site: SiteLayout, trusted: dict[str, list[str]], *, allow_logs: bool = False,
                allow_code_upload: bool = False, max_session_s: int = 3600) -> None:
    """(Re)write ``roles.json``: the launch role trusting ``trusted``, one execution role."""
    execution = site.execution_role_arn()
    principals = {kind: values for kind, values in trusted.items() if values}
    # A trust policy must name someone; an impossible fingerprint keeps the role closed.
    trust = trust_policy(principals or {"Key": ["sha256:none"]})
    roles = {
        "Roles": [{
            "RoleName": LAUNCH_ROLE,
            "Arn": site.launch_role_arn(),
            "MaxSessionDuration": max_session_s,
            "AssumeRolePolicyDocument": trust,
            "Policies": [{"PolicyName": "FL-job-actions",
                          "PolicyDocument": launch_role_policy(
                              site.name, execution, allow_logs=allow_logs,
                              allow_code_upload=allow_code_upload)}],
        }],
        "ExecutionRoles": [{"RoleName": EXECUTION_ROLE, "Arn": execution}],
    }
    tmp = site.roles_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(roles, indent=2) + "\n")
    os.replace(tmp, site.roles_path)


def trusted_principals(site: SiteLayout) -> dict[str, list[str]]:
    """The fingerprints the launch role's trust policy names now."""
    raw = json.loads(site.roles_path.read_text())
    role = next(r for r in raw["Roles"] if r["RoleName"] == LAUNCH_ROLE)
    out: dict[str, list[str]] = {}
    for statement in role["AssumeRolePolicyDocument"]["Statement"]:
        for kind, values in (statement.get("Principal") or {}).items():
            listed = [values] if isinstance(values, str) else list(values)
            out.setdefault(kind, []).extend(v for v in listed if v != "sha256:none")
    return out


def policy_allows(site: SiteLayout, sid: str) -> bool:
    """Whether the launch role's policy holds the statement ``sid`` (e.g. ``UploadApps``)."""
    raw = json.loads(site.roles_path.read_text())
    role = next(r for r in raw["Roles"] if r["RoleName"] == LAUNCH_ROLE)
    return any(s.get("Sid") == sid for p in role["Policies"]
               for s in p["PolicyDocument"]["Statement"])


def policy_allows_logs(site: SiteLayout) -> bool:
    return policy_allows(site, "ReadJobLogs")


def add_trusted(site: SiteLayout, kind: str, fingerprint: str) -> None:
    """Let the principal with this key or certificate fingerprint assume the launch role."""
    if kind not in ("Key", "Certificate") or not fingerprint.startswith("sha256:"):
        raise ValidationError("trust a 'Key' or 'Certificate' by its sha256: fingerprint")
    trusted = trusted_principals(site)
    if fingerprint not in trusted.setdefault(kind, []):
        trusted[kind].append(fingerprint)
    raw = json.loads(site.roles_path.read_text())
    role = next(r for r in raw["Roles"] if r["RoleName"] == LAUNCH_ROLE)
    write_roles(site, trusted, allow_logs=policy_allows_logs(site),
                allow_code_upload=policy_allows(site, "UploadApps"),
                max_session_s=int(role["MaxSessionDuration"]))
