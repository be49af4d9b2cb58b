"""Certificates for the transport tests: a CA, a server certificate, client identities."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedsilo.deploy.certs import (
    CertificateAuthority,
    create_ca,
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
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Identity(cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key))
