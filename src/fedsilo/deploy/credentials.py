"""Session credentials: what AssumeRole hands out, signed by the site, valid for a while.

A session token is ``fst1.<claims>.<signature>``, both parts URL-safe base64 without padding:
the claims (site, role ARN, session name, principal, issue and expiry times, access key id) as
JSON, signed with the site's Ed25519 key. The agent accepts a token only when the signature is
its own key's, the claims name this site, the role still exists, and the token has not expired;
anything else is an :class:`AuthenticationError` that says which check failed. Tokens are bearer
credentials, sent over TLS only.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from fedsilo.deploy.errors import AuthenticationError
from fedsilo.deploy.identity import PrivateKey, PublicKey, sign, verify

__all__ = ["SessionClaims", "issue_session_token", "verify_session_token"]

TOKEN_PREFIX = "fst1"
CLOCK_SKEW_S = 5.0


@dataclass(frozen=True)
class SessionClaims:
    """What a session token says about its holder."""

    site: str
    role_arn: str
    session_name: str
    principal: str
    issued_at: float
    expires_at: float
    access_key_id: str

    @property
    def expiration(self) -> str:
        """The expiry as an ISO 8601 UTC time, the shape of STS's ``Expiration``."""
        return datetime.fromtimestamp(self.expires_at, UTC).isoformat().replace("+00:00", "Z")


def issue_session_token(
    key: PrivateKey,
    *,
    site: str,
    role_arn: str,
    session_name: str,
    principal: str,
    duration_s: int,
    now: float | None = None,
) -> tuple[str, SessionClaims]:
    """A signed token for ``duration_s`` seconds, and its claims."""
    issued = time.time() if now is None else now
    claims = SessionClaims(
        site=site, role_arn=role_arn, session_name=session_name, principal=principal,
        issued_at=issued, expires_at=issued + duration_s,
        access_key_id="FSIA" + secrets.token_hex(8).upper(),
    )
    body = _b64(json.dumps(asdict(claims), sort_keys=True, separators=(",", ":")).encode())
    signature = _b64(sign(key, f"{TOKEN_PREFIX}.{body}".encode()))
    return f"{TOKEN_PREFIX}.{body}.{signature}", claims


def verify_session_token(token: str, key: PublicKey, site: str,
                         now: float | None = None) -> SessionClaims:
    """The claims of a token this site issued and that is still valid; raise otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise AuthenticationError("the session token is malformed; use the SessionToken that "
                                  "AssumeRole returned")
    try:
        signature = _unb64(parts[2])
        raw = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AuthenticationError("the session token is malformed") from exc
    try:
        verify(key, signature, f"{parts[0]}.{parts[1]}".encode())
    except AuthenticationError as exc:
        raise AuthenticationError(
            f"the session token was not issued by site {site!r} or was altered; assume the "
            "role at this site again") from exc
    try:
        claims = SessionClaims(**raw)
    except TypeError as exc:
        raise AuthenticationError("the session token's claims are malformed") from exc
    if claims.site != site:
        raise AuthenticationError(f"the session token is for site {claims.site!r}, not {site!r}")
    current = time.time() if now is None else now
    if current > claims.expires_at + CLOCK_SKEW_S:
        raise AuthenticationError(f"the session token expired at {claims.expiration}; assume the "
                                  "role again")
    if current < claims.issued_at - CLOCK_SKEW_S:
        raise AuthenticationError("the session token is not valid yet (check the clocks)")
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
