"""Who is calling: key pairs, their fingerprints, and signatures over request bodies.

A principal is known by the SHA-256 fingerprint of its public key (``sha256:<hex>``, over the
DER SubjectPublicKeyInfo) and, when it presents one, of its certificate. A site's trust policy
names these fingerprints, as an AWS trust policy names account ARNs. Ed25519 and ECDSA P-256
keys are accepted: Ed25519 for signing keys, P-256 because TLS stacks (gRPC included) take it
for certificates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from fedsilo.deploy.errors import AuthenticationError, ValidationError

__all__ = [
    "PrivateKey",
    "PublicKey",
    "Identity",
    "fingerprint",
    "generate_signing_key",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_pem",
    "sign",
    "verify",
]

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def generate_signing_key() -> ed25519.Ed25519PrivateKey:
    """A fresh Ed25519 key: small, fast and with no parameters to get wrong."""
    return ed25519.Ed25519PrivateKey.generate()


def fingerprint(key_or_cert: PublicKey | x509.Certificate) -> str:
    """``sha256:<hex>`` of a public key's SubjectPublicKeyInfo, or of a certificate's DER."""
    if isinstance(key_or_cert, x509.Certificate):
        der = key_or_cert.public_bytes(serialization.Encoding.DER)
    else:
        der = key_or_cert.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign(key: PrivateKey, data: bytes) -> bytes:
    """A signature over ``data``: pure Ed25519, or ECDSA with SHA-256."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify(key: PublicKey, signature: bytes, data: bytes) -> None:
    """Raise AuthenticationError unless ``signature`` is ``key``'s signature over ``data``."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise AuthenticationError("the signature does not match the key") from exc


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: str | Path) -> PrivateKey:
    """Read an unencrypted PEM private key (Ed25519 or EC)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ValidationError(f"{path}: only Ed25519 and EC private keys are supported")
    return key


def load_public_key(pem: bytes) -> PublicKey:
    """A PEM public key or certificate's public key (Ed25519 or EC)."""
    key: object
    try:
        if b"CERTIFICATE" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ValidationError(f"not a PEM public key or certificate: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise ValidationError("only Ed25519 and EC public keys are supported")
    return key


@dataclass(frozen=True)
class Identity:
    """A caller's key pair, and its certificate when it has one (from ``fedsilo certs``)."""

    key: PrivateKey
    certificate_pem: bytes | None = None

    @classmethod
    def load(cls, key_path: str | Path, certificate_path: str | Path | None = None) -> Identity:
        cert = Path(certificate_path).read_bytes() if certificate_path else None
        identity = cls(load_private_key(key_path), cert)
        if cert is not None and fingerprint(load_public_key(cert)) != identity.key_fingerprint:
            raise ValidationError(f"{certificate_path} is not the certificate of {key_path}")
        return identity

    @property
    def key_fingerprint(self) -> str:
        return fingerprint(self.key.public_key())

    @property
    def principal(self) -> dict[str, str]:
        """The identities a trust policy can name this caller by."""
        out = {"Key": self.key_fingerprint}
        if self.certificate_pem is not None:
            out["Certificate"] = fingerprint(x509.load_pem_x509_certificate(self.certificate_pem))
        return out
