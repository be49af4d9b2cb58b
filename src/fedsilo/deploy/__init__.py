"""The cross-account layer: sites, their roles and policies, training jobs, launchers.

A site is a data owner's directory tree and agent process; others may start training jobs in
it only through a role the site trusts them to assume, with short-lived signed credentials,
and can never read its data. See ``docs/deployment.md`` for the map to the AWS services the
design mirrors (IAM roles, STS AssumeRole, SageMaker script-mode training jobs).
"""

from __future__ import annotations

from fedsilo.deploy.errors import (
    AccessDenied,
    AuthenticationError,
    Conflict,
    DeployError,
    JobError,
    NotFound,
    UnsafePathError,
    ValidationError,
)

__all__ = [
    "AccessDenied",
    "AuthenticationError",
    "Conflict",
    "DeployError",
    "JobError",
    "NotFound",
    "UnsafePathError",
    "ValidationError",
]
