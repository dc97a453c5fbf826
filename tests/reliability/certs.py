"""Self-made keys and certificates for the security and TLS tests (``cryptography``, no openssl CLI)."""

from __future__ import annotations

import ipaddress
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue(
    directory: Path,
    name: str,
    *,
    ca: Issued | None = None,
    is_ca: bool = False,
    hosts: tuple[str, ...] = (),
    client: bool = False,
    serial: int | None = None,
    password: bytes | None = None,
    days: int = 2,
) -> Issued:
    """A 2048-bit RSA key and a certificate for ``name``: self-signed, or signed by ``ca``.

    Writes ``<name>.pem`` and ``<name>.key`` into ``directory``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.certificate.subject if ca else _name(name))
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if hosts:
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not is_ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    certificate = builder.sign(ca.private_key if ca else key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, encryption)
    )
    key_path.chmod(0o600)
    return Issued(cert_path, key_path, key, certificate)


class Pki:
    """A CA, the certificates it issued, a trusted store, and two that aren't trusted."""

    def __init__(self, directory: Path) -> None:
        self.ca = issue(directory / "ca", "celeriac test CA", is_ca=True)
        self.worker = issue(directory / "worker", "worker", ca=self.ca)
        self.client = issue(directory / "client", "client", ca=self.ca)
        # Unknown: a certificate the store has never seen.
        self.rogue = issue(directory / "rogue", "rogue")
        # Forged: another CA with the same name issues a certificate with the client's serial number,
        # so the signer id in the message is the client's, but the key is not.
        other_ca = issue(directory / "other-ca", "celeriac test CA", is_ca=True)
        self.forged = issue(directory / "forged", "client", ca=other_ca, serial=self.client.certificate.serial_number)
        self.store = directory / "store"
        self.store.mkdir()
        for trusted in (self.worker, self.client):
            shutil.copy(trusted.cert, self.store / trusted.cert.name)

    def env(self, who: Issued) -> dict[str, str]:
        return {"SEC_KEY": str(who.key), "SEC_CERT": str(who.cert), "SEC_STORE": str(self.store)}
