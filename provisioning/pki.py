"""A small X.509 PKI for MQTT mutual TLS: a CA, a broker certificate, per-device client certificates, and
the Ed25519 management key that signs commands.

Plain functions over `cryptography` objects so the CLI (`facelock ca ...`), the central monitor, the
benchmarks and the test fixtures all mint certificates the same way.  Keys are written 0600, atomically
(write, fsync, rename, fsync dir); nothing here logs key material.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from firmware import fsutil

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    key: PrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FaceLock"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(common_name: str = "FaceLock CA", days: int = 3650) -> Issued:
    """A self-signed CA (EC P-256) allowed to sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def issue_cert(
    ca: Issued,
    common_name: str,
    *,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    days: int = 825,
) -> Issued:
    """An end-entity certificate signed by `ca`.

    Client certificates (devices, the monitor, the admin tool) carry the identity in the CN, which the
    broker uses as the MQTT username (`use_identity_as_username`) and so in the ACL.  Server certificates
    carry the host names / addresses the clients verify.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def create_signing_key() -> Ed25519PrivateKey:
    """The management key that signs device commands (the device holds only its public half)."""
    return Ed25519PrivateKey.generate()


def atomic_write(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """Write, fsync, rename over, fsync the directory: readers see the old file or the new one."""
    fsutil.atomic_write(path, data, mode, make_parents=True)


def key_pem(key: PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_key(path: str | Path, key: PrivateKey | Ed25519PrivateKey) -> None:
    atomic_write(path, key_pem(key), 0o600)


def write_cert(path: str | Path, cert: x509.Certificate) -> None:
    atomic_write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_public_key(path: str | Path, key: Ed25519PrivateKey) -> None:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    atomic_write(path, pem, 0o644)


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


@dataclass(frozen=True)
class ClientFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class LoopbackPki:
    """Paths of a complete loopback PKI written by `write_loopback_pki`."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    signing_key: Path
    signing_pub: Path
    ca_issued: Issued

    def client(self, identity: str) -> ClientFiles:
        """Issue (once) and return the client certificate files for `identity`."""
        cert, key = self.dir / f"{identity}.pem", self.dir / f"{identity}.key"
        if not cert.exists():
            issued = issue_cert(self.ca_issued, identity)
            write_key(key, issued.key)
            write_cert(cert, issued.cert)
        return ClientFiles(cert, key)


def write_loopback_pki(directory: str | Path) -> LoopbackPki:
    """A CA, a broker certificate for 127.0.0.1/localhost and a management signing key, in `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca = create_ca("FaceLock test CA")
    server = issue_cert(ca, "localhost", server=True, dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    write_cert(d / "ca.pem", ca.cert)
    write_key(d / "ca.key", ca.key)
    write_cert(d / "server.pem", server.cert)
    write_key(d / "server.key", server.key)
    sk = create_signing_key()
    write_key(d / "management.key", sk)
    write_public_key(d / "management.pub", sk)
    return LoopbackPki(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "management.key",
                   d / "management.pub", ca)
