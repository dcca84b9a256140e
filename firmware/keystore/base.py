"""The keystore interface and the logic both backends share.

A keystore maps a key id to one or more *versions* of a secret.  ``rotate``
adds a new version and keeps the old ones, so data sealed under an old
version stays readable until the caller re-encrypts it and destroys the old
version with ``delete_version`` (or deletes the key); ``unseal`` returns the
current version unless told otherwise.  Backends differ only in how one
secret becomes an opaque blob on disk (``_seal``/``_unseal``): an AEAD under
a scrypt-derived KEK, or a TPM-sealed object.

Every mutation is read-modify-write of one file under an exclusive lock and
lands with one atomic rename, so a writer killed at any instant leaves the
old or the new keystore, never a broken one, and never loses a key that a
completed call had returned for.
"""

from __future__ import annotations

import base64
import re
import secrets
from abc import ABC, abstractmethod
from pathlib import Path

from firmware.fsutil import atomic_write, make_private_dir, remove_stale_temps
from firmware.keystore import keyfile
from firmware.keystore.atomic import exclusive_lock
from firmware.keystore.errors import (
    CurrentVersionError,
    InvalidKeyIdError,
    InvalidSecretError,
    KeyExistsError,
    KeyNotFoundError,
    KeystoreCorruptError,
)
from firmware.keystore.keyfile import KeyFileData, KeyRecord

_KEY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DEFAULT_SECRET_BYTES = 32
MAX_SECRET_BYTES = 64


def check_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise InvalidKeyIdError(f"invalid key id {key_id!r}: use 1-128 characters of [A-Za-z0-9._:-]")
    return key_id


def _check_secret(secret: bytes | None) -> bytes:
    if secret is None:
        return secrets.token_bytes(DEFAULT_SECRET_BYTES)
    if not isinstance(secret, (bytes, bytearray)) or not 16 <= len(secret) <= MAX_SECRET_BYTES:
        raise InvalidSecretError(f"a secret must be 16..{MAX_SECRET_BYTES} bytes")  # never echo the value
    return bytes(secret)


class Keystore(ABC):
    """create / unseal / rotate / delete keys by id; list ids.  One instance per process."""

    backend: str = ""
    file_name: str = ""

    def __init__(self, directory: Path, lock_timeout_s: float = 10.0) -> None:
        self.directory = Path(directory)
        self.path = self.directory / self.file_name
        self._lock_path = self.directory / ".lock"
        self._lock_timeout_s = lock_timeout_s
        make_private_dir(self.directory)

    # ---- backend hooks -------------------------------------------------------------------------
    @abstractmethod
    def _seal(self, data: KeyFileData, key_id: str, version: int, secret: bytes) -> bytes: ...

    @abstractmethod
    def _unseal(self, data: KeyFileData, key_id: str, version: int, blob: bytes) -> bytes: ...

    @abstractmethod
    def _new_params(self) -> dict: ...

    @abstractmethod
    def _accept(self, data: KeyFileData) -> None:
        """Check a loaded file belongs to this backend and can be opened (e.g. the passphrase)."""

    # ---- file handling -------------------------------------------------------------------------
    def _read(self) -> KeyFileData | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        data = keyfile.decode(raw, self.path)
        if data.backend != self.backend:
            raise KeystoreCorruptError(f"{self.path}: written by the {data.backend!r} backend, not {self.backend!r}")
        return data

    def _write(self, data: KeyFileData) -> None:
        atomic_write(self.path, keyfile.encode(data))

    def _open_or_init(self) -> KeyFileData:
        """Load the keystore, creating an empty one on first use (under the lock)."""
        data = self._read()
        if data is None:
            with exclusive_lock(self._lock_path, self._lock_timeout_s):
                remove_stale_temps(self.directory, self.file_name)
                data = self._read()
                if data is None:
                    data = KeyFileData(backend=self.backend, params=self._new_params())
                    self._write(data)
        self._accept(data)
        return data

    def _mutate(self, fn) -> object:  # fn(data) -> result; data written after fn returns
        with exclusive_lock(self._lock_path, self._lock_timeout_s):
            remove_stale_temps(self.directory, self.file_name)
            data = self._read()
            if data is None:
                data = KeyFileData(backend=self.backend, params=self._new_params())
            self._accept(data)
            result = fn(data)
            self._write(data)
            return result

    # ---- the interface -------------------------------------------------------------------------
    def stored_blobs(self, key_id: str) -> dict[int, bytes]:
        """Each sealed version of a key as it sits in the keystore file (base64 text, the file's own
        encoding); {} when the key is absent.  For erasure checks and audits: nothing is unsealed."""
        data = self._read()
        rec = data.keys.get(key_id) if data is not None else None
        if rec is None:
            return {}
        return {v: base64.b64encode(bytes(blob)) for v, blob in rec.versions.items()}

    def create(self, key_id: str, secret: bytes | None = None) -> int:
        """Store a new key (random 32 bytes unless ``secret`` is given); returns its version, 1."""
        check_key_id(key_id)
        value = _check_secret(secret)

        def op(data: KeyFileData) -> int:
            if key_id in data.keys:
                raise KeyExistsError(f"key {key_id!r} already exists (rotate it instead)")
            data.keys[key_id] = KeyRecord(current=1, versions={1: self._seal(data, key_id, 1, value)})
            return 1

        return op_result(self._mutate(op))

    def rotate(self, key_id: str, secret: bytes | None = None) -> int:
        """Add a new current version; older versions stay unsealable until delete()."""
        check_key_id(key_id)
        value = _check_secret(secret)

        def op(data: KeyFileData) -> int:
            rec = data.keys.get(key_id)
            if rec is None:
                raise KeyNotFoundError(f"no key {key_id!r} to rotate")
            version = max(rec.versions) + 1
            rec.versions[version] = self._seal(data, key_id, version, value)
            rec.current = version
            return version

        return op_result(self._mutate(op))

    def delete(self, key_id: str) -> None:
        """Forget every version of the key (the blobs leave the file on the next atomic write)."""
        check_key_id(key_id)

        def op(data: KeyFileData) -> None:
            if data.keys.pop(key_id, None) is None:
                raise KeyNotFoundError(f"no key {key_id!r} to delete")

        self._mutate(op)

    def delete_version(self, key_id: str, version: int) -> None:
        """Destroy one old version of a key (its sealed blob leaves the file on this atomic write).

        The current version cannot be deleted (``CurrentVersionError``): rotate first, or delete()
        the whole key.  Used after a rotation has re-encrypted everything under the new version,
        so the old one cannot be unsealed by anyone holding this device.
        """
        check_key_id(key_id)
        if isinstance(version, bool) or not isinstance(version, int):
            raise KeyNotFoundError(f"key {key_id!r}: a version is an integer, got {version!r}")

        def op(data: KeyFileData) -> None:
            rec = data.keys.get(key_id)
            if rec is None:
                raise KeyNotFoundError(f"no key {key_id!r}")
            if version not in rec.versions:
                raise KeyNotFoundError(f"key {key_id!r} has no version {version}")
            if version == rec.current:
                raise CurrentVersionError(
                    f"version {version} is the current version of key {key_id!r}: rotate first, or delete the key"
                )
            # Neither backend holds anything but the blob (a TPM sealed object is loaded only while
            # unsealing, never made persistent), so dropping it from the file destroys the version.
            del rec.versions[version]

        self._mutate(op)

    def unseal(self, key_id: str, version: int | None = None) -> bytes:
        """The secret of ``key_id`` (current version unless ``version`` is given)."""
        check_key_id(key_id)
        data = self._open_or_init()
        rec = data.keys.get(key_id)
        if rec is None:
            raise KeyNotFoundError(f"no key {key_id!r}")
        v = rec.current if version is None else version
        blob = rec.versions.get(v)
        if blob is None:
            raise KeyNotFoundError(f"key {key_id!r} has no version {v}")
        return self._unseal(data, key_id, v, blob)

    def list_ids(self) -> list[str]:
        return sorted(self._open_or_init().keys)

    def versions(self, key_id: str) -> list[int]:
        check_key_id(key_id)
        rec = self._open_or_init().keys.get(key_id)
        if rec is None:
            raise KeyNotFoundError(f"no key {key_id!r}")
        return sorted(rec.versions)

    def current_version(self, key_id: str) -> int:
        check_key_id(key_id)
        rec = self._open_or_init().keys.get(key_id)
        if rec is None:
            raise KeyNotFoundError(f"no key {key_id!r}")
        return rec.current

    def exists(self, key_id: str) -> bool:
        return check_key_id(key_id) in self._open_or_init().keys

    def ensure(self, key_id: str) -> bytes:
        """The current secret of ``key_id``, creating the key on first use (race-free)."""
        check_key_id(key_id)

        def op(data: KeyFileData) -> None:
            if key_id not in data.keys:
                data.keys[key_id] = KeyRecord(
                    current=1, versions={1: self._seal(data, key_id, 1, _check_secret(None))}
                )

        if not self.exists(key_id):
            self._mutate(op)
        return self.unseal(key_id)

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release backend resources (the TPM connection); the file backend has none."""

    def __enter__(self) -> Keystore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def op_result(x: object) -> int:
    assert isinstance(x, int)
    return x
