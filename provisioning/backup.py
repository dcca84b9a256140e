"""The backup bundle: one file holding users, policy and keys, sealed under a passphrase.

Format, version 1 (all integers big-endian):

    magic "FLBK" | version u8 | kdf u8 (1 = scrypt) | log2(N) u8 | r u8 | p u8
    | salt 16 | nonce 12 | body = ChaCha20-Poly1305(key, nonce, payload, aad = the 37 header bytes)

    key = scrypt(passphrase, salt, N, r, p, 32 bytes)
    payload = UTF-8 JSON {"format": "facelock-backup", "version": 1, "created": ISO time,
                          "manifest": {...}, "entries": {name: base64 bytes}}

The header is authenticated, so a changed KDF parameter is caught like a
changed byte of the body.  A wrong passphrase and a tampered file are
indistinguishable by design (both fail the AEAD tag) and give one error.
The KDF cost is read from the header *before* anything can be authenticated,
so it is bounded first (`firmware.crypto.kdf`: at most 64 MiB of scrypt memory
and 256 MiB of work): a crafted 101-byte file asking for N=2^20, r=32, p=16
(4 GiB) is refused with `BackupKdfError` before any allocation.

Why a fresh AEAD over plain JSON and not the image container: the entries are
keys and SQLite files, not images, and the passphrase KDF belongs here only.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from firmware import boundedjson
from firmware.crypto.errors import KdfParameterError
from firmware.crypto.kdf import ScryptParams, scrypt_params
from provisioning.errors import BackupError, PassphraseError

MAGIC = b"FLBK"
VERSION = 1
KDF_SCRYPT = 1
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
DEFAULT_LOG2_N = 15  # 32 MiB, ~0.1 s here: fine for a rare export/import, costly per guess
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
_HEADER = struct.Struct(">4sBBBBB16s12s")

# The sources of randomness and time of a bundle; known-answer tests fix them (tests/vectors/).
_random_bytes = os.urandom


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class WrongPassphraseError(BackupError, PassphraseError):
    """The passphrase is wrong, or the bundle was altered (the AEAD tag cannot tell which)."""


class BackupKdfError(BackupError):
    """The bundle's header asks for KDF parameters above FaceLock's bounds (refused before the KDF runs)."""


@dataclass(frozen=True)
class Bundle:
    manifest: dict[str, Any]
    entries: dict[str, bytes]
    created: str


def _params(log2_n: int, r: int, p: int) -> ScryptParams:
    try:
        return scrypt_params(log2_n, r, p)
    except KdfParameterError as exc:
        raise BackupKdfError(f"backup bundle refused: {exc}") from None


def seal(passphrase: bytes, manifest: dict[str, Any], entries: dict[str, bytes], *,
         log2_n: int = DEFAULT_LOG2_N, r: int = 8, p: int = 1) -> bytes:
    if not passphrase:
        raise PassphraseError("an empty passphrase would protect nothing")
    kdf = _params(log2_n, r, p)
    payload = json.dumps({
        "format": "facelock-backup",
        "version": VERSION,
        "created": _now().isoformat(timespec="seconds"),
        "manifest": manifest,
        "entries": {name: base64.b64encode(data).decode("ascii") for name, data in sorted(entries.items())},
    }, sort_keys=True).encode()
    salt, nonce = _random_bytes(SALT_BYTES), _random_bytes(NONCE_BYTES)
    header = _HEADER.pack(MAGIC, VERSION, KDF_SCRYPT, log2_n, r, p, salt, nonce)
    key = kdf.derive(passphrase, salt)
    return header + ChaCha20Poly1305(key).encrypt(nonce, payload, header)


def open_(passphrase: bytes, blob: bytes) -> Bundle:
    if len(blob) > MAX_BUNDLE_BYTES:
        raise BackupError(f"the bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    if len(blob) < _HEADER.size + TAG_BYTES:
        raise BackupError("not a FaceLock backup bundle (too short)")
    magic, version, kdf, log2_n, r, p, salt, nonce = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise BackupError("not a FaceLock backup bundle (bad magic)")
    if version != VERSION or kdf != KDF_SCRYPT:
        raise BackupError(f"unsupported backup bundle version {version} / kdf {kdf}")
    key = _params(log2_n, r, p).derive(passphrase, salt)  # bounded before any KDF work
    try:
        payload = ChaCha20Poly1305(key).decrypt(nonce, blob[_HEADER.size:], blob[:_HEADER.size])
    except InvalidTag:
        raise WrongPassphraseError("wrong passphrase, or the backup bundle was altered") from None
    try:
        doc = boundedjson.loads(payload)
        if doc.get("format") != "facelock-backup" or doc.get("version") != VERSION:
            raise ValueError("unknown payload format")
        entries = {str(k): base64.b64decode(v, validate=True) for k, v in doc["entries"].items()}
        manifest = doc["manifest"]
        if not isinstance(manifest, dict):
            raise ValueError("manifest is not an object")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"backup bundle payload is malformed: {exc}") from None
    return Bundle(manifest=manifest, entries=entries, created=str(doc.get("created", "")))
