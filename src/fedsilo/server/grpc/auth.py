"""Which clients may join: an allowlist of enrolled public keys, checked over mutual TLS.

A client is identified by the SHA-256 of its public key (the DER bytes of its
SubjectPublicKeyInfo), so re-issuing a client's certificate for the same key
keeps it enrolled, and a certificate for a new key needs a new enrolment.
The TLS handshake proves the client holds the key's private half; the
servicer then checks the key against the allowlist before the client is
registered, so a refused client never receives an instruction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["ClientAllowlist", "public_key_fingerprint"]

_CERT_MARK = b"-----BEGIN CERTIFICATE-----"


def public_key_fingerprint(pem: bytes) -> str:
    """Hex SHA-256 of the public key in a PEM certificate or PEM public key."""
    key: Any
    try:
        if _CERT_MARK in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ValueError(
            "expected a PEM certificate or a PEM public key (-----BEGIN CERTIFICATE----- or "
            f"-----BEGIN PUBLIC KEY-----): {exc}") from exc
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


class ClientAllowlist:
    """The enrolled clients' public-key fingerprints.

    Build it from PEM certificates or public keys (bytes, or paths to files):
    ``ClientAllowlist.from_pem([Path("site-a.crt"), Path("site-b.pub")])``.
    Enrolled certificates are also trusted as issuers of themselves, so a
    self-signed client certificate works without a CA.
    """

    def __init__(self, fingerprints: Iterable[str], certificates: Iterable[bytes] = ()) -> None:
        self.fingerprints = frozenset(f.lower() for f in fingerprints)
        self.certificates = tuple(certificates)

    @classmethod
    def from_pem(cls, entries: Iterable[bytes | str | Path]) -> ClientAllowlist:
        fingerprints, certificates = [], []
        for entry in entries:
            pem = entry if isinstance(entry, bytes) else Path(entry).read_bytes()
            fingerprints.append(public_key_fingerprint(pem))
            if _CERT_MARK in pem:
                certificates.append(pem)
        return cls(fingerprints, certificates)

    def __len__(self) -> int:
        return len(self.fingerprints)

    def admits(self, certificate_pem: bytes | None) -> tuple[bool, str]:
        """Whether the client presenting ``certificate_pem`` is enrolled, and why not."""
        if not certificate_pem:
            return False, "the client presented no certificate"
        try:
            fingerprint = public_key_fingerprint(certificate_pem)
        except ValueError as exc:
            return False, f"the client's certificate cannot be read: {exc}"
        if fingerprint in self.fingerprints:
            return True, ""
        return False, (f"the client's public key (sha256 {fingerprint}) is not enrolled; add "
                       "its certificate or public key to the server's client_allowlist")

    def trust_roots(self, ca_certificate: bytes | None) -> bytes:
        """PEM bundle to verify client certificates with: the CA and enrolled certificates."""
        parts = ([ca_certificate] if ca_certificate else []) + list(self.certificates)
        return b"\n".join(p.strip() for p in parts) + b"\n"
