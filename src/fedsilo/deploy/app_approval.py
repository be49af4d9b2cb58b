"""A site decides which uploaded apps may run: approved digests, or signatures it trusts.

An app that an orchestrator uploads lands in the site's code store as
``apps/<sha256 hex>.tar.gz`` (see :mod:`fedsilo.deploy.app_archive`). A job may run it only if

- the file's bytes still hash to the digest in its name (one changed byte: refused), and
- the site's ``policy/apps.json`` lists the digest under ``Approved``
  (``fedsilo site approve DIR ARCHIVE_OR_HASH``), or ``apps/<hex>.sig`` beside it is a
  signature over :func:`signed_message` by a key listed under ``TrustedSigners``
  (``fedsilo site approve DIR --signer PEM``).

::

    {"Approved": ["sha256:<hex>", ...],
     "TrustedSigners": [{"Fingerprint": "sha256:<hex>", "PublicKey": "-----BEGIN ..."}]}

Code the site put into its code store itself (``fedsilo site add-code``) is the site's own and
is not subject to these checks; only the ``apps/`` area can be written from outside, and only
by a role allowed ``code:PutCode`` (no role is, unless the site says so).
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

from fedsilo.deploy.app_archive import app_store_name, digest_from_store_name, sha256_hex
from fedsilo.deploy.errors import AccessDenied, AuthenticationError, ValidationError
from fedsilo.deploy.identity import (
    PrivateKey,
    PublicKey,
    fingerprint,
    load_public_key,
    public_key_pem,
    sign,
    verify,
)
from fedsilo.deploy.site import SiteLayout

__all__ = [
    "approve_app",
    "check_app",
    "sign_app",
    "signed_message",
    "store_upload",
    "trust_signer",
]

MAX_APP_BYTES = 64 * 1024 * 1024
MAX_SIGNATURE_BYTES = 4096
_SIGNATURE_NAME = re.compile(r"apps/([0-9a-f]{64})\.sig")


def _policy_path(site: SiteLayout) -> Path:
    return site.root / "policy" / "apps.json"


def _read_policy(site: SiteLayout) -> dict[str, Any]:
    path = _policy_path(site)
    if not path.is_file():
        return {"Approved": [], "TrustedSigners": []}
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValidationError(f"{path} must hold a JSON object")
    return {"Approved": list(raw.get("Approved", [])),
            "TrustedSigners": list(raw.get("TrustedSigners", []))}


def _write_policy(site: SiteLayout, policy: dict[str, Any]) -> None:
    path = _policy_path(site)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(policy, indent=2) + "\n")
    os.replace(tmp, path)


def approve_app(site: SiteLayout, digest: str) -> str:
    """Put ``digest`` (hex, or ``sha256:<hex>``) on the site's approved list; return it."""
    hex_digest = digest.removeprefix("sha256:").lower()
    if len(hex_digest) != 64 or any(c not in "0123456789abcdef" for c in hex_digest):
        raise ValidationError(f"{digest!r} is not a SHA-256 digest (64 hex digits)")
    policy = _read_policy(site)
    entry = f"sha256:{hex_digest}"
    if entry not in policy["Approved"]:
        policy["Approved"].append(entry)
        _write_policy(site, policy)
    return entry


def trust_signer(site: SiteLayout, key: PublicKey) -> str:
    """Let apps signed by ``key`` run at the site without their digest being listed."""
    policy = _read_policy(site)
    key_fingerprint = fingerprint(key)
    if all(s.get("Fingerprint") != key_fingerprint for s in policy["TrustedSigners"]):
        policy["TrustedSigners"].append({"Fingerprint": key_fingerprint,
                                         "PublicKey": public_key_pem(key).decode()})
        _write_policy(site, policy)
    return key_fingerprint


def signed_message(digest: str) -> bytes:
    """The bytes a publisher signs for an app: a fixed label and the archive's digest."""
    return f"fedsilo-app-v1 sha256:{digest}".encode()


def sign_app(key: PrivateKey, digest: str) -> bytes:
    """The signature file's content (base64 text) for the app with this digest."""
    return base64.b64encode(sign(key, signed_message(digest))) + b"\n"


def check_app(site: SiteLayout, store_name: str, path: Path) -> None:
    """Refuse to run ``path`` (the code store's ``store_name``) unless the site allows it.

    Names outside ``apps/`` are the site's own code and pass. Raises ValidationError for an
    archive whose bytes do not match its name, AccessDenied for an app not approved.
    """
    digest = digest_from_store_name(store_name)
    if digest is None:
        if store_name.startswith("apps/"):
            raise ValidationError(f"{store_name!r}: uploaded apps are named "
                                  "apps/<sha256 hex>.tar.gz")
        return
    actual = sha256_hex(path.read_bytes())
    if actual != digest:
        raise ValidationError(f"app archive {store_name} was altered: its SHA-256 is {actual}, "
                              "not the digest in its name; refused")
    policy = _read_policy(site)
    if f"sha256:{digest}" in policy["Approved"]:
        return
    signature_path = path.with_name(f"{digest}.sig")
    if signature_path.is_file() and _signed_by_trusted(policy, digest, signature_path):
        return
    raise AccessDenied(f"app sha256:{digest} is not approved at site {site.name}: its digest "
                       "is not on the site's approved list and no key the site trusts signed "
                       "it (the site's owner runs 'fedsilo site approve')")


def store_upload(site: SiteLayout, name: str, data: bytes) -> dict[str, Any]:
    """Write an uploaded app archive or signature into the code store (atomically).

    An archive must be named after its own digest (``apps/<hex>.tar.gz``): bytes changed on
    the way do not match and are refused, so a stored name always says what it holds. The
    answer's ``Approved`` says whether the app, as stored now, may run here.
    """
    archive_digest = digest_from_store_name(name)
    signature = _SIGNATURE_NAME.fullmatch(name)
    if archive_digest is not None:
        digest = archive_digest
        if len(data) > MAX_APP_BYTES:
            raise ValidationError(f"{name}: {len(data)} bytes, more than the {MAX_APP_BYTES} "
                                  "an app may have")
        if sha256_hex(data) != digest:
            raise ValidationError(f"{name}: the bytes received hash to {sha256_hex(data)}, not "
                                  "the digest in the name; refused")
    elif signature is not None:
        digest = signature.group(1)
        if len(data) > MAX_SIGNATURE_BYTES:
            raise ValidationError(f"{name}: a signature has at most {MAX_SIGNATURE_BYTES} bytes")
    else:
        raise ValidationError(f"{name!r}: upload apps/<sha256 hex>.tar.gz or "
                              "apps/<sha256 hex>.sig")
    target = site.inside(site.code, name, "code")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    archive = site.code / app_store_name(digest)
    return {"Location": name, "Digest": f"sha256:{digest}", "Size": len(data),
            "Approved": archive.is_file() and _approved(site, digest, archive)}


def _approved(site: SiteLayout, digest: str, path: Path) -> bool:
    try:
        check_app(site, app_store_name(digest), path)
    except AccessDenied:
        return False
    return True


def _signed_by_trusted(policy: dict[str, Any], digest: str, signature_path: Path) -> bool:
    try:
        signature = base64.b64decode(signature_path.read_bytes().strip(), validate=True)
    except ValueError:
        return False
    for signer in policy["TrustedSigners"]:
        try:
            verify(load_public_key(str(signer["PublicKey"]).encode()), signature,
                   signed_message(digest))
        except (AuthenticationError, ValidationError, KeyError):
            continue
        return True
    return False
