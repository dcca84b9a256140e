"""The door's template-receiving key (X25519) and its enrollment request.

The private key is a 32-byte secret sealed in the lock's keystore (file AEAD or TPM, whichever the lock
uses) under TEMPLATE_KEY_ID; it never leaves the device.  The enrollment CSR carries the X25519 public key
in a private extension, so the CSR's own signature (made with the TLS key) binds the two keys together:
the centre learns both from one self-authenticating request.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from firmware.fleet.errors import FleetError
from firmware.keystore.base import Keystore

TEMPLATE_KEY_ID = "fleet-template-x25519"
# 2.25.<uuid>: an OID that needs no registration (ITU-T X.667); value = the raw 32-byte X25519 key.
TEMPLATE_KEY_OID = x509.ObjectIdentifier("2.25.160855384120345386364826541829466375207")


def template_key(keystore: Keystore) -> X25519PrivateKey:
    """The door's X25519 private key, created (and sealed) on first use."""
    return X25519PrivateKey.from_private_bytes(keystore.ensure(TEMPLATE_KEY_ID)[:32])


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def enrollment_csr(device_id: str, tls_key: ec.EllipticCurvePrivateKey, template_pub: bytes) -> bytes:
    """PEM CSR: CN = device id, signed by the TLS key, carrying the X25519 public key."""
    if len(template_pub) != 32:
        raise FleetError("an X25519 public key is 32 bytes")
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FaceLock"),
                      x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(name)
           .add_extension(x509.UnrecognizedExtension(TEMPLATE_KEY_OID, template_pub), critical=False)
           .sign(tls_key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def template_pub_from_csr(csr: x509.CertificateSigningRequest) -> bytes:
    try:
        ext = csr.extensions.get_extension_for_oid(TEMPLATE_KEY_OID)
    except x509.ExtensionNotFound:
        raise FleetError("the CSR carries no template key") from None
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if len(value) != 32:
        raise FleetError("the CSR's template key is not 32 bytes")
    return bytes(value)
