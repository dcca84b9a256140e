"""File-sealed keystore: each key wrapped with ChaCha20-Poly1305 under a scrypt-derived KEK.

KEK = scrypt(len(device secret) || device secret || passphrase, salt, N, r, p).
The device secret is 32 random bytes created on first use (mode 0600); the
optional passphrase adds a factor that is not on the disk at all.  A check
value (an AEAD of nothing under the KEK) tells a wrong passphrase apart from
a damaged key blob.  Each blob's associated data names the key id and
version, so blobs cannot be swapped between ids.  ``rewrap`` (KEK rotation)
re-encrypts every key under a fresh salt and/or passphrase in one atomic
write, so it cannot lose a key.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from firmware.crypto.errors import KdfParameterError
from firmware.crypto.kdf import scrypt_params
from firmware.fsutil import atomic_write
from firmware.keystore.base import Keystore
from firmware.keystore.errors import (
    KeystoreCorruptError,
    KeystoreKdfError,
    KeystoreUnlockError,
    WrongPassphraseError,
)
from firmware.keystore.keyfile import KeyFileData

_CHECK_AAD = b"facelock keystore kek-check v1"
_NONCE = 12
DEVICE_SECRET_BYTES = 32
# WHY outside the data dir: a copy of /var/lib/facelock (a backup job, rsync to another host, a data
# dir carried to a second machine) must not carry the secret that unwraps its keys.  On a Pi without
# a TPM /etc sits on the same SD card, so a thief of the whole card still gets it: that case needs
# the TPM backend, or `facelock encrypt --pin` (see the README's threat model).
DEFAULT_DEVICE_SECRET = Path("/etc/facelock/device.secret")
ENV_DEVICE_SECRET = "FACELOCK_DEVICE_SECRET"
# KDF salts and nonces come from here; known-answer tests fix it (tests/vectors/).  The device secret
# itself always comes from secrets.token_bytes.
_random_bytes = secrets.token_bytes  # tests, demos and unprivileged runs point it elsewhere


def device_secret_path(configured: str | None) -> Path:
    """Where the device secret lives: ``[keystore] device_secret_path``, else $FACELOCK_DEVICE_SECRET,
    else /etc/facelock/device.secret — never inside the data dir unless configured so."""
    if configured:
        return Path(configured)
    env = os.environ.get(ENV_DEVICE_SECRET)
    return Path(env) if env else DEFAULT_DEVICE_SECRET


def _aad(key_id: str, version: int) -> bytes:
    return f"facelock keystore v1|file|{key_id}|{version}".encode()


def load_or_create_device_secret(path: Path, create: bool = True) -> bytes:
    """Read the device secret; with ``create``, make it (0600, durable) when it does not exist yet.

    WHY ``create`` is off when a keystore already exists: a missing device secret then means
    the keys are lost or the file was moved, and silently minting a new one would both hide
    that (the error would read "wrong passphrase") and leave a decoy secret behind.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise KeystoreUnlockError(
                f"the device secret {path} is missing: the keystore cannot be opened without it "
                "(restore it, or restore the device from a backup)"
            ) from None
        try:  # a new directory is private; an existing one (/etc/facelock holds the config too) is left as is
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeystoreUnlockError(f"cannot create {path.parent} for the device secret: {exc.strerror}") from None
        raw = secrets.token_bytes(DEVICE_SECRET_BYTES)
        try:  # exclusive: of two processes creating it at once, one wins and the other uses theirs
            atomic_write(path, raw, exclusive=True)
        except FileExistsError:
            return load_or_create_device_secret(path, create=False)
        except OSError as exc:
            raise KeystoreUnlockError(
                f"cannot create the device secret {path}: {exc.strerror} (run as the lock's user, or set "
                f"[keystore] device_secret_path or ${ENV_DEVICE_SECRET})"
            ) from None
    except OSError as exc:
        raise KeystoreUnlockError(f"cannot read the device secret {path}: {exc.strerror}") from None
    if len(raw) != DEVICE_SECRET_BYTES:
        raise KeystoreUnlockError(f"device secret {path} has {len(raw)} bytes, expected {DEVICE_SECRET_BYTES}")
    return raw


def move_legacy_device_secret(legacy: Path, path: Path) -> bool:
    """Move a device secret kept in the data dir (the layout before it moved out) to ``path``.

    Crash-safe in that order: the new copy is written durably and exclusively first, the old
    one removed after; killed in between, both exist and the next open removes the old one.
    Returns whether a legacy secret was found.
    """
    try:
        raw = legacy.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise KeystoreUnlockError(f"cannot read the old device secret {legacy}: {exc.strerror}") from None
    if len(raw) != DEVICE_SECRET_BYTES:
        raise KeystoreUnlockError(f"old device secret {legacy} has {len(raw)} bytes, expected {DEVICE_SECRET_BYTES}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, raw, exclusive=True)
    except FileExistsError:
        if path.read_bytes() != raw:
            raise KeystoreUnlockError(
                f"both {legacy} and {path} hold a device secret and they differ: remove the wrong one"
            ) from None
    except OSError as exc:
        raise KeystoreUnlockError(
            f"cannot move the device secret out of the data dir to {path}: {exc.strerror} (set [keystore] "
            f"device_secret_path or ${ENV_DEVICE_SECRET})"
        ) from None
    legacy.unlink()
    fd = os.open(legacy.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


class FileKeystore(Keystore):
    backend = "file"
    file_name = "keys.fks"

    def __init__(
        self,
        directory: Path,
        device_secret_path: Path,
        passphrase: str | None = None,
        scrypt_log2_n: int = 15,
        scrypt_r: int = 8,
        scrypt_p: int = 1,
        lock_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(directory, lock_timeout_s)
        self._device_secret_path = Path(device_secret_path)
        legacy = self.directory / "device.secret"
        if self._device_secret_path != legacy and self.path.exists():
            move_legacy_device_secret(legacy, self._device_secret_path)  # upgrade: the secret leaves the data dir
        self._passphrase = passphrase
        self._kdf = (scrypt_log2_n, scrypt_r, scrypt_p)
        self._keks: dict[tuple, ChaCha20Poly1305] = {}  # (salt, n, r, p) -> AEAD, memoised per process
        self._open_or_init()  # fail now on a wrong passphrase or damaged file, not at first unseal

    def _derive(self, params: dict, passphrase: str | None, create_secret: bool = False) -> ChaCha20Poly1305:
        try:
            salt = base64.b64decode(params["salt"], validate=True)
            log2n, r, p = int(params["log2n"]), int(params["r"]), int(params["p"])
        except (KeyError, ValueError, TypeError):
            raise KeystoreCorruptError(f"{self.path}: malformed KDF parameters") from None
        if params.get("kdf") != "scrypt":
            raise KeystoreCorruptError(f"{self.path}: unsupported KDF {params.get('kdf')!r}")
        try:  # read before the KEK check can authenticate anything: bounded first (64 MiB)
            kdf = scrypt_params(log2n, r, p)
        except KdfParameterError as exc:
            raise KeystoreKdfError(f"{self.path}: {exc}") from None
        memo = (salt, log2n, r, p, passphrase)
        if memo not in self._keks:
            ds = load_or_create_device_secret(self._device_secret_path, create=create_secret)
            pw = len(ds).to_bytes(2, "big") + ds + (passphrase or "").encode()
            kek = kdf.derive(pw, salt)
            self._keks[memo] = ChaCha20Poly1305(kek)
        return self._keks[memo]

    def _make_params(self, passphrase: str | None) -> dict:
        log2n, r, p = self._kdf
        params = {
            "kdf": "scrypt",
            "log2n": log2n,
            "r": r,
            "p": p,
            "salt": base64.b64encode(_random_bytes(16)).decode(),
        }
        nonce = _random_bytes(_NONCE)
        # a new keystore (or a KEK rotation) is the only place a device secret may be created
        aead = self._derive(params, passphrase, create_secret=True)
        params["check"] = base64.b64encode(nonce + aead.encrypt(nonce, b"", _CHECK_AAD)).decode()
        return params

    def _new_params(self) -> dict:
        return self._make_params(self._passphrase)

    def _accept(self, data: KeyFileData) -> None:
        aead = self._derive(data.params, self._passphrase)
        try:
            check = base64.b64decode(data.params["check"], validate=True)
            aead.decrypt(check[:_NONCE], check[_NONCE:], _CHECK_AAD)
        except (KeyError, ValueError, TypeError):
            raise KeystoreCorruptError(f"{self.path}: malformed KEK check value") from None
        except InvalidTag:
            raise WrongPassphraseError(
                f"{self.path}: wrong passphrase or device secret (the key-encryption key does not match)"
            ) from None

    def _seal(self, data: KeyFileData, key_id: str, version: int, secret: bytes) -> bytes:
        nonce = _random_bytes(_NONCE)
        return nonce + self._derive(data.params, self._passphrase).encrypt(nonce, secret, _aad(key_id, version))

    def _unseal(self, data: KeyFileData, key_id: str, version: int, blob: bytes) -> bytes:
        aead = self._derive(data.params, self._passphrase)
        try:
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], _aad(key_id, version))
        except (InvalidTag, ValueError):
            raise KeystoreCorruptError(
                f"{self.path}: key {key_id!r} v{version} fails authentication (damaged or altered)"
            ) from None

    def rewrap(self, new_passphrase: str | None = None) -> None:
        """Rotate the KEK: fresh salt (and new passphrase); every key re-wrapped in one atomic write."""
        old_pass = self._passphrase

        def op(data: KeyFileData) -> None:
            plain = {
                (kid, v): self._unseal(data, kid, v, blob)
                for kid, rec in data.keys.items()
                for v, blob in rec.versions.items()
            }
            data.params = self._make_params(new_passphrase)
            self._passphrase = new_passphrase
            for (kid, v), secret in plain.items():
                data.keys[kid].versions[v] = self._seal(data, kid, v, secret)

        try:
            self._mutate(op)
        except BaseException:
            self._passphrase = old_pass
            raise
