"""The deployment layer's errors, one hierarchy, each mapped to an HTTP status by the agent.

    DeployError (FedsiloError)
    ├── ValidationError (ValueError)           400  a request or document of the wrong shape
    │   └── UnsafePathError                    400  a path that leaves the site (.., links)
    ├── AuthenticationError (PermissionError)  401  missing, forged, expired, other-site token
    ├── AccessDenied (PermissionError)         403  the role's policy does not allow the action
    ├── NotFound (LookupError)                 404  no such job, role or channel
    ├── Conflict                               409  a job name in use, a job already ended
    └── JobError (RuntimeError)                     a job ended Failed or Stopped

Each also subclasses the builtin its callers already catch, so ``except PermissionError`` keeps
working. ``code`` is the name the agent sends in its JSON error bodies (as AWS services do), so a
client can turn the body back into the same exception with :func:`error_from_code`.
"""

from __future__ import annotations

from fedsilo.common.exceptions import FedsiloError

__all__ = [
    "AccessDenied",
    "AuthenticationError",
    "Conflict",
    "DeployError",
    "JobError",
    "NotFound",
    "UnsafePathError",
    "ValidationError",
    "error_from_code",
]


class DeployError(FedsiloError):
    """Base class of the deployment layer's errors."""

    code = "InternalFailure"
    status = 500


class ValidationError(DeployError, ValueError):
    """A request, policy or configuration of the wrong shape; the message says which field."""

    code = "ValidationException"
    status = 400


class UnsafePathError(ValidationError):
    """A path in a request or an archive that would reach outside the site's directories."""

    code = "UnsafePathException"


class AuthenticationError(DeployError, PermissionError):
    """Credentials that are missing, malformed, forged, expired or issued by another site."""

    code = "InvalidClientTokenId"
    status = 401


class AccessDenied(DeployError, PermissionError):
    """The caller is authenticated but no policy statement allows the action on the resource."""

    code = "AccessDeniedException"
    status = 403


class NotFound(DeployError, LookupError):
    """The named job, role or channel does not exist at this site."""

    code = "ResourceNotFound"
    status = 404


class Conflict(DeployError):
    """The request clashes with the state: a job name in use, stopping a job that has ended."""

    code = "ResourceInUse"
    status = 409


class JobError(DeployError, RuntimeError):
    """A training job ended Failed or Stopped; ``site`` and ``reason`` say where and why."""

    code = "JobFailed"

    def __init__(self, site: str, job: str, job_status: str, reason: str,
                 log_tail: list[str] | None = None) -> None:
        super().__init__(f"{site}: job {job} {job_status}: {reason}")
        self.site = site
        self.job = job
        self.job_status = job_status
        self.reason = reason
        self.log_tail = log_tail  # the job log's last lines, where the site let us read them


_BY_CODE: dict[str, type[DeployError]] = {
    cls.code: cls
    for cls in (ValidationError, UnsafePathError, AuthenticationError, AccessDenied, NotFound,
                Conflict)
}


def error_from_code(code: str, message: str) -> DeployError:
    """The exception an agent's JSON error body ``{"code", "message"}`` stands for."""
    return _BY_CODE.get(code, DeployError)(message)
