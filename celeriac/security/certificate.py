"""X.509 certificates, private keys and the certificate store of the ``auth`` serializer.

Only RSA keys are supported, as in Celery; signatures are RSA-PSS with MGF1 over the
configured digest and the largest salt (``PSS.MAX_LENGTH``), so Celery 5 verifies what
celeriac signs and the other way round.

A certificate is known by its id: the issuer's attribute values joined by spaces,
a space, and the serial number (``"celeriac test CA 4242"``). The signer's id travels in
every signed message; the receiver looks it up in its store. The store *is* the trust list:
a certificate in the store is trusted, one that isn't is refused. Chains are not walked.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import load_pem_x509_certificate

from ..exceptions import SecurityError

__all__ = ["CertStore", "Certificate", "FSCertStore", "PrivateKey", "get_digest_algorithm"]


def get_digest_algorithm(digest: str = "sha256") -> hashes.HashAlgorithm:
    """``"sha256"`` -> ``hashes.SHA256()`` (any name the cryptography library knows)."""
    algorithm = getattr(hashes, digest.upper().replace("-", "_"), None)
    if not (isinstance(algorithm, type) and issubclass(algorithm, hashes.HashAlgorithm)):
        raise SecurityError(f"unknown digest {digest!r} (e.g. 'sha256', 'sha512')")
    return algorithm()


def _pss(digest: hashes.HashAlgorithm) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.MAX_LENGTH)


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


class Certificate:
    """An X.509 certificate (PEM) with an RSA public key."""

    def __init__(self, pem: str | bytes) -> None:
        try:
            self._cert = load_pem_x509_certificate(_bytes(pem))
        except ValueError as exc:
            raise SecurityError(f"Invalid certificate: {exc}") from exc
        key = self._cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SecurityError("Invalid certificate: only RSA certificates are supported")
        self._key = key

    def has_expired(self) -> bool:
        return datetime.now(timezone.utc) >= self._cert.not_valid_after_utc

    def get_serial_number(self) -> int:
        return int(self._cert.serial_number)

    def get_issuer(self) -> str:
        return " ".join(str(attribute.value) for attribute in self._cert.issuer)

    def get_id(self) -> str:
        """Issuer and serial number: what names this certificate in a signed message."""
        return f"{self.get_issuer()} {self.get_serial_number()}"

    def verify(self, data: bytes, signature: bytes, digest: hashes.HashAlgorithm) -> None:
        """Raise :class:`SecurityError` unless ``signature`` is this key's signature of ``data``."""
        try:
            self._key.verify(signature, data, _pss(digest), digest)
        except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as exc:
            raise SecurityError(f"Bad signature from {self.get_id()!r}: {exc!r}") from exc


class PrivateKey:
    """An RSA private key (PEM, optionally encrypted with ``password``)."""

    def __init__(self, pem: str | bytes, password: str | bytes | None = None) -> None:
        try:
            key = serialization.load_pem_private_key(_bytes(pem), password=_bytes(password) if password else None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SecurityError(f"Invalid private key: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SecurityError("Invalid private key: only RSA keys are supported")
        self._key = key

    def sign(self, data: bytes, digest: hashes.HashAlgorithm) -> bytes:
        return self._key.sign(data, _pss(digest), digest)


class CertStore:
    """Trusted certificates by id."""

    def __init__(self) -> None:
        self._certs: dict[str, Certificate] = {}

    def itercerts(self) -> Iterator[Certificate]:
        yield from self._certs.values()

    def __getitem__(self, cert_id: str | bytes) -> Certificate:
        key = cert_id.decode("utf-8", "replace") if isinstance(cert_id, bytes) else cert_id
        try:
            return self._certs[key]
        except KeyError:
            raise SecurityError(f"Unknown certificate: {key!r} is not in the certificate store") from None

    def __len__(self) -> int:
        return len(self._certs)

    def add_cert(self, cert: Certificate) -> None:
        cert_id = cert.get_id()
        if cert_id in self._certs:
            raise SecurityError(f"Duplicate certificate: {cert_id!r}")
        self._certs[cert_id] = cert


class FSCertStore(CertStore):
    """The PEM certificates in a directory (every file in it) or matching a glob pattern."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        pattern = os.fspath(path)
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*")
        for name in sorted(glob.glob(pattern)):
            if os.path.isdir(name):
                continue
            with open(name, "rb") as f:
                cert = Certificate(f.read())
            if cert.has_expired():
                raise SecurityError(f"Expired certificate: {cert.get_id()!r} ({name})")
            self.add_cert(cert)
        if not self._certs:
            raise SecurityError(f"no certificates found in {os.fspath(path)!r}")
