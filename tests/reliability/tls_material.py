"""Certificates for the transport tests: a CA, a server certificate, client identities."""

from __future__ import annotations

from dataclasses import dataclass

from fedsilo.deploy.certs import (
    CertificateAuthority,
    create_ca,
    create_self_signed_client_certificate,
    issue_client_certificate,
    issue_server_certificate,
)
from fedsilo.deploy.identity import private_key_pem


@dataclass(frozen=True)
class Identity:
    """A certificate chain and its private key, as PEM."""

    certificate: bytes
    key: bytes

    @property
    def pair(self) -> tuple[bytes, bytes]:
        return self.certificate, self.key


@dataclass(frozen=True)
class TlsMaterial:
    ca: CertificateAuthority
    server: Identity

    @property
    def server_certificates(self) -> tuple[bytes, bytes, bytes]:
        return self.ca.certificate_pem, self.server.certificate, self.server.key

    def client(self, name: str) -> Identity:
        cert, key = issue_client_certificate(self.ca, name)
        return Identity(cert, private_key_pem(key))


def make_material(name: str = "federation") -> TlsMaterial:
    ca = create_ca(name)
    cert, key = issue_server_certificate(ca)
    return TlsMaterial(ca, Identity(cert, private_key_pem(key)))


def self_signed_client(name: str) -> Identity:
    """A client certificate no CA signed: enrolment by public key is all that vouches for it."""
    cert, key = create_self_signed_client_certificate(name, days=30)
    return Identity(cert, private_key_pem(key))
