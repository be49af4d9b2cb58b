"""A site's roles: the launch role others may assume, and the execution role jobs run as.

The site's ``policy/roles.json`` holds them in the shape of IAM's GetRole answers::

    {"Roles": [{"RoleName": "FL-kickoff-client-job", "Arn": "arn:fedsilo:iam::site1:role/...",
                "MaxSessionDuration": 3600,
                "AssumeRolePolicyDocument": {trust policy},
                "Policies": [{"PolicyName": "FL-job-actions", "PolicyDocument": {...}}]}],
     "ExecutionRoles": [{"RoleName": "service-role/FL-execution", "Arn": "..."}]}

:func:`launch_role_policy` writes the seed's permission policy for a site: the five job
actions, ``iam:PassRole`` on the one execution role, and nothing else (log reading only when
asked for).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsilo.deploy.conditions import Value
from fedsilo.deploy.errors import DeployError, NotFound, ValidationError
from fedsilo.deploy.policy import Decision, PolicyDocument

__all__ = [
    "CODE_ACTION",
    "JOB_ACTIONS",
    "ExecutionRole",
    "Role",
    "RoleStore",
    "launch_role_policy",
    "code_arn",
    "role_arn",
    "job_arn",
    "trust_policy",
]

JOB_ACTIONS = (
    "job:CreateTrainingJob",
    "job:DescribeTrainingJob",
    "job:StopTrainingJob",
    "job:UpdateTrainingJob",
    "job:ListTrainingJobs",
)
LOG_ACTION = "logs:GetLogEvents"
log = logging.getLogger("fedsilo.deploy.roles")
CODE_ACTION = "code:PutCode"  # upload an app into the code store's apps/ area
DEFAULT_MAX_SESSION_S = 3600
MIN_SESSION_S = 900


def role_arn(site: str, name: str) -> str:
    return f"arn:fedsilo:iam::{site}:role/{name}"


def job_arn(site: str, name: str) -> str:
    return f"arn:fedsilo:job::{site}:training-job/{name}"


def code_arn(site: str, name: str) -> str:
    return f"arn:fedsilo:code::{site}:{name}"


def trust_policy(principals: dict[str, list[str]]) -> dict[str, Any]:
    """Who may assume a role: ``{"Key": [fingerprints], "Certificate": [fingerprints]}``."""
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": principals, "Action": "sts:AssumeRole"}]}


def launch_role_policy(site: str, execution_role_arn: str, *, allow_logs: bool = False,
                       allow_code_upload: bool = False) -> dict[str, Any]:
    """The seed's FL-sagemaker-actions policy, for this site's jobs and execution role.

    ``allow_code_upload`` adds ``code:PutCode`` on the code store's ``apps/`` area: the
    federation may then bring its app, which runs only once the site approves it.
    """
    statements: list[dict[str, Any]] = [
        {"Sid": "TrainingJobs", "Effect": "Allow", "Action": list(JOB_ACTIONS),
         "Resource": job_arn(site, "*")},
        {"Sid": "PassExecutionRole", "Effect": "Allow", "Action": ["iam:GetRole", "iam:PassRole"],
         "Resource": execution_role_arn},
    ]
    if allow_logs:
        statements.append({"Sid": "ReadJobLogs", "Effect": "Allow", "Action": LOG_ACTION,
                           "Resource": job_arn(site, "*")})
    if allow_code_upload:
        statements.append({"Sid": "UploadApps", "Effect": "Allow", "Action": CODE_ACTION,
                           "Resource": code_arn(site, "apps/*")})
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class Role:
    """A role: who may assume it, what its sessions may do, how long a session lasts."""

    name: str
    arn: str
    trust: PolicyDocument
    permissions: tuple[PolicyDocument, ...]
    max_session_duration: int = DEFAULT_MAX_SESSION_S

    def allows(self, action: str, resource: str,
               context: Mapping[str, Value] | None = None) -> Decision:
        """Explicit deny in any policy wins; otherwise any allow; otherwise deny."""
        decisions = [p.evaluate(action, resource, context=context) for p in self.permissions]
        denied = [d for d in decisions if not d.allowed and d.statement is not None]
        if denied:
            return denied[0]
        allowed = [d for d in decisions if d.allowed]
        return allowed[0] if allowed else Decision(False, "no statement allows it "
                                                          "(denied by default)")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Role:
        try:
            name = str(raw["RoleName"])
            max_s = int(raw.get("MaxSessionDuration", DEFAULT_MAX_SESSION_S))
            policies = tuple(PolicyDocument.from_dict(p["PolicyDocument"],
                                                      f"{name}.{p['PolicyName']}", "identity")
                             for p in raw.get("Policies", []))
            trust = PolicyDocument.from_dict(raw["AssumeRolePolicyDocument"], f"{name}.trust",
                                             "trust")
            arn = str(raw["Arn"])
        except KeyError as exc:
            raise ValidationError(f"role {raw.get('RoleName', '?')}: missing {exc}") from exc
        if not MIN_SESSION_S <= max_s <= 43200:
            raise ValidationError(f"{name}: MaxSessionDuration must be 900 to 43200 s")
        return cls(name, arn, trust, policies, max_s)


@dataclass(frozen=True)
class ExecutionRole:
    """The role a job runs as; the launch role may pass this one role and no other."""

    name: str
    arn: str


class RoleStore:
    """The roles in a site's ``roles.json``, reread when the file changes.

    :meth:`load` checks the file and says what is wrong (``site serve`` calls it before it
    serves). A file that is changed into one that does not load fails closed: every role
    lookup is refused (with a generic message for the caller; the reason goes to the log)
    until the file is fixed, never answered with the roles it held before.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._roles: dict[str, Role] = {}
        self._execution: dict[str, ExecutionRole] = {}
        self._broken: str | None = None

    def load(self) -> None:
        """Read and check the file now; ValidationError says what is wrong with it."""
        try:
            raw = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{self.path} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValidationError(f"{self.path} must hold a JSON object")
        roles = [Role.from_dict(r) for r in raw.get("Roles", [])]
        self._roles = {r.arn: r for r in roles}
        self._execution = {str(r["Arn"]): ExecutionRole(str(r["RoleName"]), str(r["Arn"]))
                           for r in raw.get("ExecutionRoles", [])}

    def role(self, arn: str) -> Role:
        """The role ``arn``; NotFound names nothing else of the site."""
        self._reload()
        if arn not in self._roles:
            raise NotFound(f"no role {arn} at this site")
        return self._roles[arn]

    def execution_role(self, arn: str) -> ExecutionRole:
        self._reload()
        if arn not in self._execution:
            raise NotFound(f"no execution role {arn} at this site")
        return self._execution[arn]

    def _reload(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.load()
                self._broken = None
            except (ValidationError, OSError) as exc:
                self._roles, self._execution = {}, {}
                self._broken = str(exc)
                log.error("the site's policy does not load; every request is refused: %s", exc)
        if self._broken is not None:
            raise DeployError("the site's policy is being changed and cannot be used now; "
                              "every request is refused until the site fixes it")
