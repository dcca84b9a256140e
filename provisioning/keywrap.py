"""Passphrase wrapping of the management private keys (the CA key and the command-signing key).

Why not PKCS#8 ``BestAvailableEncryption``: it is PBES2 with PBKDF2-HMAC-SHA256 at 2,048 iterations, under a
millisecond per guess, hundreds of times cheaper to brute-force than the backups' scrypt with the same
passphrase, for the two keys that can mint device identities and open every door.  So the same recipe as
the backup bundle (provisioning/backup.py): a memory-hard KDF and an AEAD whose associated data is the
header, in a PEM-style armour so the file says what it is:

    -----BEGIN FACELOCK WRAPPED KEY-----
    base64( magic "FLWK" | version u8 (1) | kdf u8 (1 = scrypt) | log2(N) u8 | r u8 | p u8
            | salt 16 | nonce 12 | ChaCha20-Poly1305(scrypt(passphrase), nonce, PKCS#8 DER, aad = header) )
    -----END FACELOCK WRAPPED KEY-----

The KDF cost is read from the header, so it is bounded *before* the KDF runs (firmware.crypto.kdf: memory
128·r·N <= 64 MiB, bounded work): a crafted file cannot make the CLI allocate gigabytes.  A wrong passphrase and an altered file
are indistinguishable by design (both fail the tag) and give one error.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from firmware.crypto.errors import KdfParameterError
from firmware.crypto.kdf import ScryptParams, scrypt_params
from provisioning.errors import InputFileError, PassphraseError

MAGIC = b"FLWK"
VERSION = 1
KDF_SCRYPT = 1
BEGIN = b"-----BEGIN FACELOCK WRAPPED KEY-----"
END = b"-----END FACELOCK WRAPPED KEY-----"
LEGACY_MARKER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
# 2^16 x r 8 = 64 MiB and ~0.3 s per guess here: the CA key is used a few times a year.
DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P = 16, 8, 1
MAX_FILE_BYTES = 64 * 1024
_HEADER = struct.Struct(">4sBBBBB16s12s")


class KeyFormatError(InputFileError):
    """The file is not a FaceLock wrapped key, or its header is out of bounds."""


class LegacyKeyFormatError(InputFileError):
    """The key is in the old PKCS#8 PBKDF2 (2,048 iterations) format: `facelock ca rewrap` converts it."""


def check_params(log2_n: int, r: int, p: int) -> ScryptParams:
    """Refuse KDF parameters outside FaceLock's bounds (firmware.crypto.kdf, the one place they live:
    <= 64 MiB memory, bounded work), before any memory is committed to them."""
    try:
        return scrypt_params(log2_n, r, p)
    except KdfParameterError as exc:
        raise KeyFormatError(str(exc)) from None


def _kdf(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return check_params(log2_n, r, p).derive(passphrase, salt)


def wrap(der_pkcs8: bytes, passphrase: bytes, *, log2_n: int = DEFAULT_LOG2_N, r: int = DEFAULT_R,
         p: int = DEFAULT_P) -> bytes:
    """The armoured file for an unencrypted PKCS#8 DER private key."""
    if not passphrase:
        raise PassphraseError("an empty passphrase would protect nothing")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = _HEADER.pack(MAGIC, VERSION, KDF_SCRYPT, log2_n, r, p, salt, nonce)
    body = header + ChaCha20Poly1305(_kdf(passphrase, salt, log2_n, r, p)).encrypt(nonce, der_pkcs8, header)
    b64 = base64.encodebytes(body).replace(b"\n", b"")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return b"\n".join([BEGIN, *lines, END]) + b"\n"


def is_wrapped(data: bytes) -> bool:
    return data.lstrip().startswith(BEGIN)


def is_legacy(data: bytes) -> bool:
    return data.lstrip().startswith(LEGACY_MARKER)


def params(data: bytes) -> tuple[int, int, int]:
    """(log2 N, r, p) of a wrapped file (what a guess costs), without the passphrase."""
    _, _, _, log2_n, r, p, _, _ = _parse(data)[0]
    return log2_n, r, p


def _parse(data: bytes) -> tuple[tuple, bytes, bytes]:
    if len(data) > MAX_FILE_BYTES:
        raise KeyFormatError(f"wrapped key file larger than {MAX_FILE_BYTES} bytes")
    text = data.strip()
    if not (text.startswith(BEGIN) and text.endswith(END)):
        raise KeyFormatError("not a FaceLock wrapped key (missing armour)")
    try:
        blob = base64.b64decode(b"".join(text[len(BEGIN):-len(END)].split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("wrapped key is not valid base64") from None
    if len(blob) < _HEADER.size + 16:
        raise KeyFormatError("wrapped key is truncated")
    fields = _HEADER.unpack_from(blob)
    magic, version, kdf = fields[:3]
    if magic != MAGIC:
        raise KeyFormatError("not a FaceLock wrapped key (bad magic)")
    if version != VERSION or kdf != KDF_SCRYPT:
        raise KeyFormatError(f"unsupported wrapped key version {version} / kdf {kdf}")
    return fields, blob[:_HEADER.size], blob[_HEADER.size:]


def unwrap(data: bytes, passphrase: bytes) -> bytes:
    """The PKCS#8 DER inside; PassphraseError on a wrong passphrase or an altered file."""
    (_, _, _, log2_n, r, p, salt, nonce), header, ct = _parse(data)
    check_params(log2_n, r, p)  # before the KDF commits memory to them
    if not passphrase:
        raise PassphraseError("this key is encrypted: a passphrase is needed")
    try:
        return ChaCha20Poly1305(_kdf(passphrase, salt, log2_n, r, p)).decrypt(nonce, ct, header)
    except InvalidTag:
        raise PassphraseError("wrong passphrase, or the wrapped key file was altered") from None


def pkcs8_der(key: object) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                             serialization.NoEncryption())
