"""The CLI's side of the PKI: CSRs, passphrase-encrypted CA keys on disk, loading with typed errors.

provisioning/pki.py (shared with the MQTT tests and benchmarks) mints the CA and
certificates; this module adds what onboarding needs on top: the device makes
its own key and a CSR, the CA signs the CSR (checking its signature), and the
CA's private keys are stored encrypted with the operator's passphrase.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.atomicfile import write_atomic
from provisioning.errors import InputFileError, PassphraseError

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FaceLock"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def sign_csr(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, csr: x509.CertificateSigningRequest,
             days: int = 825) -> x509.Certificate:
    """A client certificate for the CSR's subject and key (the same profile as pki.issue_cert)."""
    if not csr.is_signature_valid:
        raise InputFileError("the CSR's signature does not verify")
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise InputFileError(f"certificate {cert.subject.rfc4514_string()} is not signed by this CA") from exc


def save_key(path: Path, key: PrivateKey, passphrase: bytes | None) -> None:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    write_atomic(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc), 0o600)


def load_key(path: Path, passphrase: bytes | None) -> PrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:  # encrypted without a passphrase given, or the reverse
        raise PassphraseError(f"key {path}: {exc}") from exc
    except ValueError as exc:
        if b"ENCRYPTED" in data:  # cryptography: "Bad decrypt. Incorrect password?"
            raise PassphraseError(f"wrong passphrase for {path}") from exc
        raise InputFileError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise InputFileError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def save_cert(path: Path, cert: x509.Certificate) -> None:
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def load_cert(path: Path) -> x509.Certificate:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read certificate {path}: {exc.strerror}") from exc
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InputFileError(f"{path} is not a PEM certificate") from exc


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()
