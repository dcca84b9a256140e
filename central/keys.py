"""The centre's own keys, all rooted in its keystore (firmware.keystore, file AEAD or TPM backend).

    central-signing     Ed25519 seed: signs policy bundles and remote commands (devices pin its public half)
    central-templates   AEAD key (versioned): seals every template stored in the database
    central-ca          passphrase of the CA private key file (ca.key)

The data dir holds: keystore/, ca.pem, ca.key (scrypt + ChaCha20-Poly1305, provisioning.pkifiles), central.pub,
crl.pem.  The keystore's KEK = scrypt(secret || passphrase): the passphrase comes from
$FACELOCK_CENTRAL_PASSPHRASE (optional); the 32-byte secret lives *outside* the data dir, at
$FACELOCK_CENTRAL_SECRET or else beside it (`<data_dir>.secret`, 0600), so a copy of the data dir (a
backup, a database host's disk, an rsync) opens none of the centre's keys.  A centre made before kept it
in keystore/device.secret: the first open moves it out (firmware.keystore.file_backend).
Nothing here logs key material.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from central.errors import KeyError_
from firmware import fsutil
from firmware.keystore.errors import KeystoreError
from firmware.keystore.file_backend import FileKeystore
from provisioning import pki, pkifiles

SIGNING_KEY_ID = "central-signing"
TEMPLATE_KEY_ID = "central-templates"
CA_PASS_ID = "central-ca"
PASSPHRASE_ENV = "FACELOCK_CENTRAL_PASSPHRASE"
SECRET_ENV = "FACELOCK_CENTRAL_SECRET"


def secret_path(directory: str | Path, configured: str | Path | None = None) -> Path:
    """Where the keystore secret of the centre in `directory` lives: `configured`, $FACELOCK_CENTRAL_SECRET,
    else beside the data dir (never in it)."""
    if configured:
        return Path(configured)
    env = os.environ.get(SECRET_ENV)
    if env:
        return Path(env)
    d = Path(directory).resolve()
    return d.with_name(d.name + ".secret")


class CentreKeys:
    def __init__(self, directory: str | Path, scrypt_log2_n: int = 15, secret_file: str | Path | None = None) -> None:
        self.dir = Path(directory)
        fsutil.make_private_dir(self.dir)
        self.secret_path = secret_path(self.dir, secret_file)
        try:
            self.keystore = FileKeystore(self.dir / "keystore", self.secret_path,
                                         passphrase=os.environ.get(PASSPHRASE_ENV), scrypt_log2_n=scrypt_log2_n)
        except KeystoreError as exc:
            raise KeyError_(f"cannot open the centre keystore: {exc}") from None
        self._signing: Ed25519PrivateKey | None = None
        self._aeads: dict[int, ChaCha20Poly1305] = {}
        self._ca: pki.Issued | None = None

    # -- paths -----------------------------------------------------------------------------------
    @property
    def ca_cert_path(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.dir / "ca.key"

    @property
    def public_key_path(self) -> Path:
        return self.dir / "central.pub"

    @property
    def crl_path(self) -> Path:
        return self.dir / "crl.pem"

    # -- init --------------------------------------------------------------------------------------
    def init(self, ca_name: str = "FaceLock centre CA") -> None:
        """Create the CA and the keys once; a second call leaves them alone."""
        self.signing_key()
        self.template_aead()
        if not self.ca_cert_path.exists():
            ca = pki.create_ca(ca_name)
            pkifiles.save_key(self.ca_key_path, ca.key, self.keystore.ensure(CA_PASS_ID))
            pki.write_cert(self.ca_cert_path, ca.cert)
        if not self.public_key_path.exists():
            fsutil.atomic_write(self.public_key_path, self.public_key_pem(), 0o644)

    # -- keys --------------------------------------------------------------------------------------
    def signing_key(self) -> Ed25519PrivateKey:
        if self._signing is None:
            self._signing = Ed25519PrivateKey.from_private_bytes(self.keystore.ensure(SIGNING_KEY_ID)[:32])
        return self._signing

    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key().public_key()

    def public_key_pem(self) -> bytes:
        return self.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)

    def template_key_version(self) -> int:
        self.template_aead()
        return self.keystore.current_version(TEMPLATE_KEY_ID)

    def template_aead(self, version: int | None = None) -> ChaCha20Poly1305:
        if version is None:
            self.keystore.ensure(TEMPLATE_KEY_ID)
            version = self.keystore.current_version(TEMPLATE_KEY_ID)
        if version not in self._aeads:
            try:
                self._aeads[version] = ChaCha20Poly1305(self.keystore.unseal(TEMPLATE_KEY_ID, version))
            except KeystoreError as exc:
                raise KeyError_(f"template key version {version} is not available: {exc}") from None
        return self._aeads[version]

    def ca(self) -> pki.Issued:
        if self._ca is None:
            if not self.ca_cert_path.exists():
                raise KeyError_(f"no CA in {self.dir}: run `facelock-central init`")
            key = pkifiles.load_key(self.ca_key_path, self.keystore.unseal(CA_PASS_ID))
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise KeyError_("the CA key is not an EC key")
            self._ca = pki.Issued(key, x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes()))
        return self._ca

    def loopback_pki(self, directory: str | Path) -> pki.LoopbackPki:
        """A broker certificate for 127.0.0.1 signed by this CA, as the LoopbackPki the test broker takes
        (tests and `facelock bench fleet`); `.client(name)` issues clients under the same CA."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        ca = self.ca()
        server = pki.issue_cert(ca, "localhost", server=True, dns_names=("localhost",), ip_addresses=("127.0.0.1",))
        pki.write_cert(d / "ca.pem", ca.cert)
        pki.write_cert(d / "server.pem", server.cert)
        pki.write_key(d / "server.key", server.key)
        fsutil.atomic_write(d / "management.pub", self.public_key_pem(), 0o644)
        return pki.LoopbackPki(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "management.key",
                               d / "management.pub", ca)
