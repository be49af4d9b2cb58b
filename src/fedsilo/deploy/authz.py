"""Every call after AssumeRole: the session token names a role, the role's policy decides."""

from __future__ import annotations

from dataclasses import dataclass

from fedsilo.deploy.audit import AuditEntry
from fedsilo.deploy.conditions import request_context
from fedsilo.deploy.credentials import SessionClaims, verify_session_token
from fedsilo.deploy.errors import AccessDenied, AuthenticationError, NotFound
from fedsilo.deploy.identity import PublicKey
from fedsilo.deploy.roles import Role, RoleStore

__all__ = ["Authorizer", "Session"]


@dataclass(frozen=True)
class Session:
    """A verified caller: the token's claims and the role they were issued for."""

    claims: SessionClaims
    role: Role


class Authorizer:
    """Turns a bearer token into a :class:`Session` and checks actions against its role."""

    def __init__(self, site: str, roles: RoleStore, verify_key: PublicKey) -> None:
        self.site = site
        self.roles = roles
        self.verify_key = verify_key

    def session(self, authorization: str | None) -> Session:
        """The session of an ``Authorization: Bearer <SessionToken>`` header."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationError("this call needs 'Authorization: Bearer <SessionToken>'; "
                                      "get a token from AssumeRole")
        claims = verify_session_token(authorization.removeprefix("Bearer ").strip(),
                                      self.verify_key, self.site)
        try:
            role = self.roles.role(claims.role_arn)
        except NotFound as exc:
            raise AuthenticationError(f"the session's role {claims.role_arn} no longer exists "
                                      "at this site") from exc
        return Session(claims, role)

    def check(self, session: Session, action: str, resource: str,
              audit: AuditEntry | None = None) -> None:
        """Raise AccessDenied unless the session's role allows ``action`` on ``resource``;
        the decision and its statement go to ``audit``."""
        claims = session.claims
        decision = session.role.allows(action, resource, request_context(
            {"Key": claims.principal}, claims.session_name))
        if audit is not None:
            audit.check(action, resource, decision.allowed, decision.statement)
        if not decision.allowed:  # which statement decided is the site's business, not the caller's
            raise AccessDenied(f"{session.role.arn} (session {session.claims.session_name}) is "
                               f"not authorized to perform {action} on {resource}")
