"""The CA's certificate revocation list: what `device revoke` and `device renew` add to, what the broker loads.

Why a CRL: a device certificate stays valid for its whole lifetime (825 days by default), so a renewed,
replaced or stolen one would keep opening MQTT sessions as that device.  The CA keeps `pki/crl.pem` (PEM,
0644: it is public) and a broker configured with `crlfile` refuses every certificate listed in it at the TLS
handshake (mosquitto reads the file at start: restart or reload the broker after a change; a session that
is already up is ended by deleting the device from the broker's dynamic-security plugin, which
`facelock device revoke --broker ...` also does).

The CRL's nextUpdate is the CA's own expiry: OpenSSL refuses *every* client once a loaded CRL has expired,
and a fleet must not stop because nobody re-signed a list.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.atomicfile import write_atomic
from provisioning.errors import InputFileError

CRL_NAME = "crl.pem"


def crl_path(pki_dir: Path) -> Path:
    return Path(pki_dir) / CRL_NAME


def load_crl(path: Path, ca_cert: x509.Certificate) -> x509.CertificateRevocationList | None:
    """The CRL at `path` (None when there is none yet); InputFileError if it is not one signed by this CA."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputFileError(f"cannot read CRL {path}: {exc.strerror}") from exc
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError as exc:
        raise InputFileError(f"{path} is not a PEM CRL") from exc
    if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_cert.public_key()):
        raise InputFileError(f"{path} is not signed by this CA (refusing to extend it)")
    return crl


def revoked_serials(path: Path, ca_cert: x509.Certificate) -> set[int]:
    crl = load_crl(path, ca_cert)
    return {r.serial_number for r in crl} if crl is not None else set()


def write_crl(path: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
              add: list[int] = ()) -> x509.CertificateRevocationList:
    """Re-sign the CRL at `path` with the serials in `add` appended (an empty CRL when there is none)."""
    old = load_crl(path, ca_cert)
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(max(ca_cert.not_valid_after_utc, now + dt.timedelta(days=1))))
    seen: set[int] = set()
    for entry in old or ():
        seen.add(entry.serial_number)
        builder = builder.add_revoked_certificate(entry)
    for serial in add:
        if serial in seen:
            continue
        seen.add(serial)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    number = (old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
              if old is not None and _has_number(old) else 1)
    builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    crl = builder.sign(ca_key, hashes.SHA256())
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    return crl


def _has_number(crl: x509.CertificateRevocationList) -> bool:
    try:
        crl.extensions.get_extension_for_class(x509.CRLNumber)
        return True
    except x509.ExtensionNotFound:
        return False
