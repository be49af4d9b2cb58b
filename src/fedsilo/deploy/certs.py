"""Certificates for TLS and identity: a CA, server certificates, client certificates.

The federation server's gRPC endpoint and each site agent's HTTPS endpoint present a server
certificate issued by a CA their callers trust; callers (the orchestrator, site clients) may
hold a client certificate from the same CA, whose fingerprint a site's trust policy can name.
Keys are ECDSA P-256, which every TLS stack here (gRPC's included) accepts.

``write_authority`` / ``write_server_certificate`` / ``write_client_certificate`` lay the files
out as ``fedsilo certs`` does: ``ca.pem`` + ``ca.key``, ``<name>.pem`` + ``<name>.key``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedsilo.deploy.identity import load_private_key, private_key_pem

__all__ = [
    "CertificateAuthority",
    "DEFAULT_HOSTS",
    "certificate_hosts",
    "create_ca",
    "create_self_signed_client_certificate",
    "issue_client_certificate",
    "issue_server_certificate",
    "load_authority",
    "write_authority",
    "write_client_certificate",
    "write_pair",
    "write_server_certificate",
]

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate (PEM) and private key."""

    certificate_pem: bytes
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem)


def create_ca(name: str, days: int = 365) -> CertificateAuthority:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedsilo")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY).not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), key)


def issue_server_certificate(ca: CertificateAuthority, hosts: tuple[str, ...] = DEFAULT_HOSTS,
                             days: int = 365) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A server certificate whose subject alternative names are ``hosts`` (IPs or DNS names)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return _issue(ca, hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, days,
                  x509.SubjectAlternativeName(names))


def certificate_hosts(certificate: x509.Certificate) -> list[str]:
    """The names and addresses a server certificate is valid for (its SANs)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in san.get_values_for_type(x509.IPAddress)] + \
        list(san.get_values_for_type(x509.DNSName))


def issue_client_certificate(ca: CertificateAuthority, name: str,
                             days: int = 365) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A client certificate for ``name`` (TLS client authentication and request signing)."""
    return _issue(ca, name, ExtendedKeyUsageOID.CLIENT_AUTH, days, None)


def create_self_signed_client_certificate(
        name: str, days: int = 365) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A client certificate no CA signs: a site makes its own, the federation enrols it.

    The private key never leaves the site; the federation server admits the site by this
    certificate's public key (``client_allowlist``), as a site trusts the federation's key.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY).not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key


def _issue(ca: CertificateAuthority, common_name: str, usage: x509.ObjectIdentifier, days: int,
           san: x509.SubjectAlternativeName | None) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY).not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), key


def write_authority(directory: Path, name: str) -> CertificateAuthority:
    """Create a CA and write ``ca.pem`` and ``ca.key`` (owner-only) in ``directory``."""
    ca = create_ca(name)
    write_pair(directory, "ca", ca.certificate_pem, ca.key)
    return ca


def load_authority(directory: Path) -> CertificateAuthority:
    key = load_private_key(directory / "ca.key")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / 'ca.key'} is not an EC key")
    return CertificateAuthority((directory / "ca.pem").read_bytes(), key)


def write_server_certificate(directory: Path, ca: CertificateAuthority, name: str = "server",
                             hosts: tuple[str, ...] = DEFAULT_HOSTS) -> tuple[Path, Path]:
    cert, key = issue_server_certificate(ca, hosts)
    return write_pair(directory, name, cert, key)


def write_client_certificate(directory: Path, ca: CertificateAuthority,
                             name: str) -> tuple[Path, Path]:
    cert, key = issue_client_certificate(ca, name)
    return write_pair(directory, name, cert, key)


def write_pair(directory: Path, name: str, cert_pem: bytes,
                key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(key))
    return cert_path, key_path
