"""AssumeRole: a caller proves who it is by signing its request; the site checks the trust.

The request body is JSON::

    {"RoleArn": ..., "RoleSessionName": ..., "DurationSeconds": 900,
     "Audience": "<site name>", "Timestamp": <unix seconds>,
     "PublicKey": "<PEM>"}          # or "Certificate": "<PEM>"

and its signature (the caller's private key over the exact body bytes, base64) travels in the
``X-Fedsilo-Signature`` header. The site checks the signature, that the request is meant for it
(``Audience``) and fresh (``Timestamp`` within five minutes; a signature is accepted once), and
that the role's trust policy names the caller's key or certificate fingerprint. The answer is
shaped like STS's: ``Credentials`` (``AccessKeyId``, ``SessionToken``, ``Expiration``) and
``AssumedRoleUser``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from fedsilo.deploy.audit import AuditEntry
from fedsilo.deploy.conditions import request_context
from fedsilo.deploy.credentials import issue_session_token
from fedsilo.deploy.errors import AccessDenied, AuthenticationError, NotFound, ValidationError
from fedsilo.deploy.identity import (
    Identity,
    PrivateKey,
    fingerprint,
    load_public_key,
    public_key_pem,
    sign,
    verify,
)
from fedsilo.deploy.roles import MIN_SESSION_S, RoleStore

__all__ = ["SIGNATURE_HEADER", "AssumeRoleService", "SeenSignatures",
           "signed_assume_role_request"]

SIGNATURE_HEADER = "X-Fedsilo-Signature"
FRESHNESS_S = 300.0
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_OPTIONAL_FIELDS = {  # STS's own limits
    "ExternalId": (re.compile(r"[\w+=,.@:/-]{2,1224}"),
                   "2 to 1224 of letters, digits and +=,.@:/-"),
    "SourceIdentity": (_SESSION_NAME, "2 to 64 of letters, digits and +=,.@-"),
}


def signed_assume_role_request(
    identity: Identity, *, role_arn: str, session_name: str, site: str,
    duration_s: int = MIN_SESSION_S, external_id: str | None = None,
    source_identity: str | None = None,
) -> tuple[bytes, str]:
    """The body and signature header value a caller sends to a site's AssumeRole.

    ``external_id`` and ``source_identity`` are STS's ``ExternalId`` and ``SourceIdentity``:
    a trust policy can require them through ``sts:ExternalId`` and ``aws:SourceIdentity``.
    """
    body: dict[str, Any] = {
        "RoleArn": role_arn, "RoleSessionName": session_name, "DurationSeconds": duration_s,
        "Audience": site, "Timestamp": time.time(),
    }
    if external_id is not None:
        body["ExternalId"] = external_id
    if source_identity is not None:
        body["SourceIdentity"] = source_identity
    if identity.certificate_pem is not None:
        body["Certificate"] = identity.certificate_pem.decode()
    else:
        body["PublicKey"] = public_key_pem(identity.key.public_key()).decode()
    raw = json.dumps(body).encode()
    return raw, base64.b64encode(sign(identity.key, raw)).decode()


class SeenSignatures:
    """Signatures already accepted, kept until they could no longer pass the freshness check.

    A SQLite file under the site (``state/assume-role-seen.sqlite3``), so a signed request
    replayed after the agent restarts is still refused; ``":memory:"`` keeps them in memory.
    Signatures are stored as SHA-256 digests.
    """

    def __init__(self, path: Path | str = ":memory:") -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None  # opened at the first request, not before
        self._lock = threading.Lock()

    def first_use(self, signature: str, now: float) -> bool:
        """Record ``signature``; False when it was recorded before (a replay)."""
        digest = hashlib.sha256(signature.encode()).hexdigest()
        with self._lock:
            db = self._open()
            db.execute("DELETE FROM seen WHERE at < ?", (now - 2 * FRESHNESS_S,))
            try:
                db.execute("INSERT INTO seen VALUES (?, ?)", (digest, now))
            except sqlite3.IntegrityError:
                return False
        return True

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("CREATE TABLE IF NOT EXISTS seen (digest TEXT PRIMARY KEY, "
                             "at REAL NOT NULL)")
        return self._db


class AssumeRoleService:
    """Checks signed AssumeRole requests against the site's roles and issues sessions.

    Parameters
    ----------
    site:
        The site's name, which requests must name as their ``Audience``.
    roles:
        The site's roles.
    signing_key:
        The key that signs session tokens.
    seen:
        Where accepted signatures are remembered (in memory unless given).
    """

    def __init__(self, site: str, roles: RoleStore, signing_key: PrivateKey,
                 seen: SeenSignatures | None = None) -> None:
        self.site = site
        self.roles = roles
        self.signing_key = signing_key
        self.seen = seen if seen is not None else SeenSignatures()

    def assume_role(self, body: bytes, signature: str | None,
                    audit: AuditEntry | None = None) -> dict[str, Any]:
        """Check a signed request and answer with session credentials; who asked, for which
        role, and the trust policy's decision go to ``audit``."""
        request, principal = self._authenticate(body, signature)
        requested = str(request.get("RoleArn", ""))
        if audit is not None:
            audit.principal = principal["Key"]
            audit.session = str(request["RoleSessionName"])
        # An unknown role and a role that does not trust the caller get the same answer, which
        # names nothing but what was asked for (as STS answers both).
        denied = AccessDenied(f"{principal['Key']} is not authorized to perform "
                              f"sts:AssumeRole on {requested}")
        try:
            role = self.roles.role(requested)
        except NotFound:
            if audit is not None:
                audit.check("sts:AssumeRole", requested, False, None)
            raise denied from None
        duration = request.get("DurationSeconds")
        decision = role.trust.evaluate("sts:AssumeRole", principal=principal, context=(
            request_context(principal, str(request["RoleSessionName"]),
                            **{"sts:ExternalId": request.get("ExternalId"),
                               "aws:SourceIdentity": request.get("SourceIdentity"),
                               "sts:DurationSeconds": None if duration is None
                               else str(duration)})))
        if audit is not None:
            audit.check("sts:AssumeRole", requested, decision.allowed, decision.statement)
        if not decision.allowed:
            raise denied
        duration = int(request.get("DurationSeconds", min(3600, role.max_session_duration)))
        if not MIN_SESSION_S <= duration <= role.max_session_duration:
            raise ValidationError(f"DurationSeconds must be {MIN_SESSION_S} to "
                                  f"{role.max_session_duration} for {role.arn}, got {duration}")
        token, claims = issue_session_token(
            self.signing_key, site=self.site, role_arn=role.arn,
            session_name=str(request["RoleSessionName"]), principal=principal["Key"],
            duration_s=duration)
        return {
            "Credentials": {"AccessKeyId": claims.access_key_id, "SessionToken": token,
                            "Expiration": claims.expiration},
            "AssumedRoleUser": {
                "AssumedRoleId": f"{claims.access_key_id}:{claims.session_name}",
                "Arn": role.arn.replace(":role/", ":assumed-role/") + f"/{claims.session_name}",
            },
        }

    def _authenticate(self, body: bytes, signature: str | None) -> tuple[dict[str, Any],
                                                                          dict[str, str]]:
        if not signature:
            raise AuthenticationError(f"AssumeRole needs the {SIGNATURE_HEADER} header: the "
                                      "caller's signature over the request body")
        try:
            request = json.loads(body)
            sig = base64.b64decode(signature, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise ValidationError("AssumeRole needs a JSON body and a base64 signature") from exc
        if not isinstance(request, dict):
            raise ValidationError("AssumeRole's body must be a JSON object")
        for name in ("RoleArn", "RoleSessionName", "Audience", "Timestamp"):
            if name not in request:
                raise ValidationError(f"AssumeRole needs {name}")
        if not _SESSION_NAME.fullmatch(str(request["RoleSessionName"])):
            raise ValidationError("RoleSessionName must be 2 to 64 of letters, digits and +=,.@-")
        for name, (pattern, rule) in _OPTIONAL_FIELDS.items():
            if name in request and not (isinstance(request[name], str)
                                        and pattern.fullmatch(request[name])):
                raise ValidationError(f"{name} must be {rule}")
        pem = request.get("Certificate") or request.get("PublicKey")
        if not isinstance(pem, str):
            raise ValidationError("AssumeRole needs the caller's PublicKey or Certificate (PEM)")
        key = load_public_key(pem.encode())
        verify(key, sig, body)
        if request["Audience"] != self.site:
            raise AuthenticationError(f"the request is signed for site {request['Audience']!r}, "
                                      f"not {self.site!r}")
        if not isinstance(request["Timestamp"], int | float):
            raise ValidationError("Timestamp must be the signing time in seconds since the epoch")
        age = time.time() - float(request["Timestamp"])
        if abs(age) > FRESHNESS_S:
            raise AuthenticationError(f"the request was signed {age:.0f} s ago; requests are "
                                      f"accepted for {FRESHNESS_S:.0f} s (check the clocks)")
        self._remember(signature)
        principal = {"Key": fingerprint(key)}
        if "Certificate" in request:
            principal["Certificate"] = fingerprint(x509.load_pem_x509_certificate(pem.encode()))
        return request, principal

    def _remember(self, signature: str) -> None:
        if not self.seen.first_use(signature, time.time()):
            raise AuthenticationError("this signed request was already used; sign a new one")
