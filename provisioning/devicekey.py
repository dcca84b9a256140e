"""Where the device's TLS private key lives: sealed by the keystore, or a 0600 PEM file.

With the keystore backend (the default where the keystore is TPM-backed) the
key's 32-byte P-256 private scalar is a keystore secret (id ``device-tls``),
TPM-sealed at rest; the device unseals it when it opens its MQTT connection
(:func:`load`; firmware side: ``ec.derive_private_key(int.from_bytes(
ks.unseal("device-tls"), "big"), ec.SECP256R1())``).  Without a TPM the key is
a 0600 PEM file, which ssl.load_cert_chain reads directly.  This is a sealed key, not a TPM-resident non-exportable one:
that would need the tpm2-openssl provider inside the TLS stack, which Python's
ssl module cannot drive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.atomicfile import remove_file, write_atomic
from provisioning.errors import ProvisioningError

if TYPE_CHECKING:
    from provisioning.datadir import DataDir

KEY_ID = "device-tls"


def choose(backend: str) -> str:
    """"auto": the keystore when it is TPM-backed (the key is then TPM-sealed), else a 0600 file.

    A file-sealed keystore would only move the key next to its own KEK's device
    secret in the same data dir, while a plain PEM file is what the TLS stack
    (ssl.load_cert_chain) can load directly.
    """
    if backend != "auto":
        return backend
    from provisioning import stores

    return "keystore" if stores.keystore_config().backend == "tpm" else "file"


def store(dd: DataDir, key: ec.EllipticCurvePrivateKey, backend: str) -> str:
    """Seal the device TLS key; returns the backend actually used ("keystore" or "file")."""
    backend = choose(backend)
    if backend == "keystore":
        from provisioning import stores

        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        ks = stores.open_keystore(dd)
        if ks.exists(KEY_ID):
            ks.rotate(KEY_ID, scalar)
        else:
            ks.create(KEY_ID, scalar)
        remove_file(dd.device_key)
        return "keystore"
    if backend != "file":
        raise ProvisioningError(f"unknown key backend {backend!r}")
    write_atomic(dd.device_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), 0o600)
    return "file"


def load(dd: DataDir) -> ec.EllipticCurvePrivateKey:
    """The device's TLS private key, from wherever `device init` put it."""
    bundle = dd.require_device()
    if bundle.get("key_backend") == "keystore":
        from provisioning import stores

        scalar = stores.open_keystore(dd).unseal(KEY_ID)
        return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    from provisioning import pkifiles

    key = pkifiles.load_key(dd.device_key, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key
