"""The CLI's side of the PKI: CSRs, passphrase-encrypted CA keys on disk, loading with typed errors.

provisioning/pki.py (shared with the MQTT tests and benchmarks) mints the CA and
certificates; this module adds what onboarding needs on top: the device makes
its own key and a CSR, the CA signs the CSR (checking its signature), and the
CA's private keys are stored wrapped with the operator's passphrase (scrypt + ChaCha20-Poly1305,
provisioning/keywrap.py), in a CA directory that is not a lock's data dir (:func:`default_ca_dir`).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning import keywrap
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
    """With a passphrase: scrypt + ChaCha20-Poly1305 (provisioning.keywrap); without: a plain 0600 PEM
    (only the device TLS key, which the TLS stack must read itself)."""
    if passphrase:
        data = keywrap.wrap(keywrap.pkcs8_der(key), passphrase)
    else:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    write_atomic(path, data, 0o600)


def _read_key_file(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read key {path}: {exc.strerror}") from exc


def load_key(path: Path, passphrase: bytes | None) -> PrivateKey:
    data = _read_key_file(path)
    if keywrap.is_legacy(data):
        raise keywrap.LegacyKeyFormatError(
            f"{path} is in the old PKCS#8 format (PBKDF2, 2,048 iterations, cheap to guess): "
            "convert it with `facelock ca rewrap` (same passphrase)")
    if keywrap.is_wrapped(data):
        try:
            der = keywrap.unwrap(data, passphrase or b"")
        except PassphraseError as exc:
            raise PassphraseError(f"{path}: {exc}") from None
        except InputFileError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        key = serialization.load_der_private_key(der, password=None)
    else:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (TypeError, ValueError) as exc:
            raise InputFileError(f"{path} is not a PEM private key") from exc
        if passphrase:  # a management key must never sit unprotected
            raise keywrap.LegacyKeyFormatError(f"{path} is not encrypted: wrap it with `facelock ca rewrap`")
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise InputFileError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def rewrap_legacy(path: Path, passphrase: bytes) -> bool:
    """Convert an old PKCS#8 (PBKDF2) or unencrypted PEM key file in place to the scrypt + AEAD wrapping; False when it
    already is.  The new file replaces the old one atomically, so an interruption leaves either."""
    data = _read_key_file(path)
    if keywrap.is_wrapped(data):
        load_key(path, passphrase)  # the passphrase must still open it
        return False
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if keywrap.is_legacy(data) else None)
    except TypeError:
        raise InputFileError(f"{path} is not a PEM private key") from None
    except ValueError:
        if keywrap.is_legacy(data):
            raise PassphraseError(f"wrong passphrase for {path}") from None
        raise InputFileError(f"{path} is not a PEM private key") from None
    save_key(path, key, passphrase)  # type: ignore[arg-type]
    return True


# -- where the CA lives: the management host, never a lock's data dir ----------------------------------
ENV_CA_DIR = "FACELOCK_CA_DIR"
LOCK_DATA_MARKERS = ("users.db", "audit.db", "outbox.db", "keystore", "device", "lockstate.json")


def default_ca_dir() -> Path:
    """$FACELOCK_CA_DIR, else $XDG_DATA_HOME/facelock-ca (~/.local/share/facelock-ca): a directory of the
    operator's account on the management host, not a lock's data dir (/var/lib/facelock)."""
    env = os.environ.get(ENV_CA_DIR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "facelock-ca"


def lock_data_dir_reason(ca_dir: Path, data_dir: Path | None) -> str | None:
    """Why ``ca_dir`` is a lock's data dir (so must not hold the CA), or None."""
    try:
        same = data_dir is not None and ca_dir.resolve() == data_dir.resolve()
    except OSError:
        same = False
    if same:
        return "it is the lock's data dir"
    found = [m for m in LOCK_DATA_MARKERS if (ca_dir / m).exists()]
    return f"it holds a lock's files ({', '.join(found)})" if found else None


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
def ca_dir_for(ca_dir: Path | None, data_dir: Path) -> Path:
    """The CA directory `device init|renew` use: --ca-dir, else :func:`default_ca_dir`; a CA that an older
    version put in the lock's data dir is still found there (with a warning to move it)."""
    if ca_dir is not None:
        return ca_dir
    root = default_ca_dir()
    legacy = Path(data_dir)
    if not (root / "pki" / "ca.crt").is_file() and (legacy / "pki" / "ca.crt").is_file():
        import click

        click.echo(f"facelock: warning: the CA is in the lock's data dir {legacy}: move it to the management "
                   f"host (${ENV_CA_DIR} or --ca-dir) and run `facelock ca rewrap`", err=True)
        return legacy
    return root
