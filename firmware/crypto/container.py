"""The FaceLock image container: "Fernet for images".

One versioned binary token that carries an image (a raw numpy frame, or the
bytes of an encoded PNG/JPEG file) encrypted in two layers:

1. the chaotic layer of the FaceLock paper (native permutation + two-way
   diffusion, `firmware.crypto.hazmat.native.cipher_encrypt`), and
2. a standard AEAD over the result, ChaCha20-Poly1305 by default (a
   Raspberry Pi 4 has no AES instructions) or AES-256-GCM.

The AEAD is what makes the token secure: it authenticates the whole header
as associated data and the body as ciphertext, so any change is detected
before a single plaintext byte is returned.  The chaotic layer is kept for the
paper's image-scrambling properties and as defence in depth; it is never
trusted alone.

Layout (all integers big-endian; documented in the README):

    magic "FLKC" | version u8 | aead_id u8 | chaos_id u8 | kind u8
    | key_id 16 | salt 16 | nonce 12 | dtype u8 | ndim u8 | meta_len u32
    | shape: ndim x u32 | metadata: meta_len bytes of UTF-8 JSON
    | body: AEAD(chaotic(payload)) including the 16-byte tag

Per-image keys: HKDF-SHA256(key, salt, info=header prefix) gives the AEAD key
and the chaotic layer's seed, so no two images share a keystream even under
one long-term key.
"""

from __future__ import annotations

import io
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from firmware import boundedjson
from firmware.crypto.errors import (
    AuthenticationError,
    ContainerFormatError,
    CryptoError,
    ImageDecodeError,
    UnsupportedVersionError,
    WrongKeyError,
)
from firmware.crypto.hazmat import native

MAGIC = b"FLKC"
VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 16
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_NDIM = 4
MAX_META_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 1 << 30  # 1 GiB: far above any camera frame, bounds memory on garbage

AEAD_CHACHA20_POLY1305 = 1
AEAD_AES256_GCM = 2
AEADS = {"chacha20poly1305": AEAD_CHACHA20_POLY1305, "aes256gcm": AEAD_AES256_GCM}
_AEAD_CLASSES = {AEAD_CHACHA20_POLY1305: ChaCha20Poly1305, AEAD_AES256_GCM: AESGCM}

CHAOS_CML64_V1 = 1  # native/cipher.c: 64-lane coupled logistic lattice, cell permutation, 2-way diffusion

KIND_ARRAY = 0
KIND_FILE = 1

_DTYPES = {
    1: np.dtype("u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<i2"),
    4: np.dtype("<i4"),
    5: np.dtype("<f4"),
    6: np.dtype("<f8"),
}
_DTYPE_CODES = {dt: code for code, dt in _DTYPES.items()}

_FIXED = struct.Struct(">4sBBBB16s16s12sBBI")

# The one source of per-image randomness (salt, nonce); known-answer tests fix it (tests/vectors/).
_random_bytes = os.urandom


@dataclass(frozen=True)
class Header:
    version: int
    aead_id: int
    chaos_id: int
    kind: int
    key_id: bytes
    salt: bytes
    nonce: bytes
    dtype: np.dtype
    shape: tuple[int, ...]
    metadata: dict[str, Any]
    length: int  # bytes of header, i.e. offset of the body

    @property
    def payload_bytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Opened:
    """What `open_` returns: exactly one of `array` (raw frames) or `data` (file bytes)."""

    header: Header
    array: np.ndarray | None = None
    data: bytes | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def key_id_for(key: bytes) -> bytes:
    """A public fingerprint of a key, so a wrong key is named as such, not as tampering."""
    return HKDF(hashes.SHA256(), KEY_ID_BYTES, salt=None, info=b"facelock key id v1").derive(key)


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise CryptoError(f"the container key must be {KEY_BYTES} bytes")


def _derive(key: bytes, salt: bytes, prefix: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(
        hashes.SHA256(),
        KEY_BYTES + native.CIPHER_SEEDBYTES,
        salt=salt,
        info=b"facelock image v1|" + prefix,
    ).derive(key)
    return okm[:KEY_BYTES], okm[KEY_BYTES:]


def _encode_header(
    aead_id: int, kind: int, key_id: bytes, salt: bytes, nonce: bytes,
    dtype: np.dtype, shape: tuple[int, ...], metadata: dict[str, Any],
) -> bytes:
    meta = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode() if metadata else b""
    if len(meta) > MAX_META_BYTES:
        raise CryptoError(f"metadata is {len(meta)} bytes; the limit is {MAX_META_BYTES}")
    if len(shape) > MAX_NDIM or any(d < 0 or d > 0xFFFFFFFF for d in shape):
        raise CryptoError(f"shape {shape} cannot be stored (at most {MAX_NDIM} dims of u32)")
    fixed = _FIXED.pack(
        MAGIC, VERSION, aead_id, CHAOS_CML64_V1, kind, key_id, salt, nonce,
        _DTYPE_CODES[dtype], len(shape), len(meta),
    )
    return fixed + struct.pack(f">{len(shape)}I", *shape) + meta


def read_header(token: bytes | bytearray | memoryview) -> Header:
    """Parse and bound-check a header without any key (e.g. to show what a file is)."""
    buf = memoryview(token)
    if len(buf) < _FIXED.size:
        raise ContainerFormatError(
            f"not a FaceLock container: {len(buf)} bytes is shorter than the {_FIXED.size}-byte header"
        )
    (magic, version, aead_id, chaos_id, kind, key_id, salt, nonce, dcode, ndim, meta_len) = _FIXED.unpack_from(buf)
    if magic != MAGIC:
        raise ContainerFormatError("not a FaceLock container (bad magic)")
    if version != VERSION:
        raise UnsupportedVersionError(f"container version {version} is not supported (this build reads {VERSION})")
    if aead_id not in _AEAD_CLASSES:
        raise UnsupportedVersionError(f"unknown AEAD algorithm id {aead_id}")
    if chaos_id != CHAOS_CML64_V1:
        raise UnsupportedVersionError(f"unknown chaotic-layer id {chaos_id}")
    if kind not in (KIND_ARRAY, KIND_FILE):
        raise ContainerFormatError(f"unknown payload kind {kind}")
    if dcode not in _DTYPES:
        raise ContainerFormatError(f"unknown dtype code {dcode}")
    if ndim > MAX_NDIM:
        raise ContainerFormatError(f"{ndim} dimensions (at most {MAX_NDIM})")
    if meta_len > MAX_META_BYTES:
        raise ContainerFormatError(f"metadata length {meta_len} exceeds {MAX_META_BYTES}")
    off = _FIXED.size
    if len(buf) < off + 4 * ndim + meta_len:
        raise ContainerFormatError("truncated container (header cut short)")
    shape = struct.unpack_from(f">{ndim}I", buf, off)
    off += 4 * ndim
    metadata: dict[str, Any] = {}
    if meta_len:
        try:
            metadata = boundedjson.loads(bytes(buf[off : off + meta_len]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ContainerFormatError(f"metadata is not UTF-8 JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise ContainerFormatError("metadata is not a JSON object")
    off += meta_len
    header = Header(
        version, aead_id, chaos_id, kind, bytes(key_id), bytes(salt), bytes(nonce),
        _DTYPES[dcode], tuple(shape), metadata, off,
    )
    if kind == KIND_FILE and (header.dtype != np.dtype("u1") or ndim != 1):
        raise ContainerFormatError("a file payload must be a 1-D byte string")
    if header.payload_bytes > MAX_PAYLOAD_BYTES:
        raise ContainerFormatError(f"declared payload of {header.payload_bytes} bytes exceeds the limit")
    body = len(buf) - off
    if body != header.payload_bytes + TAG_BYTES:
        what = "truncated" if body < header.payload_bytes + TAG_BYTES else "trailing bytes after"
        raise ContainerFormatError(
            f"{what} container body: {body} bytes, expected {header.payload_bytes + TAG_BYTES}"
        )
    return header


def _seal(
    key: bytes, payload: np.ndarray, kind: int, dtype: np.dtype, shape: tuple[int, ...],
    metadata: dict[str, Any] | None, aead: str, key_id: bytes | None,
) -> bytes:
    _check_key(key)
    if aead not in AEADS:
        raise CryptoError(f"unknown AEAD {aead!r}; choose one of {sorted(AEADS)}")
    aead_id = AEADS[aead]
    kid = key_id if key_id is not None else key_id_for(bytes(key))
    if len(kid) != KEY_ID_BYTES:
        raise CryptoError(f"key_id must be {KEY_ID_BYTES} bytes")
    salt, nonce = _random_bytes(SALT_BYTES), _random_bytes(NONCE_BYTES)
    header = _encode_header(aead_id, kind, kid, salt, nonce, dtype, shape, metadata or {})
    aead_key, seed = _derive(bytes(key), salt, header[: _FIXED.size])
    n = payload.size
    out = bytearray(len(header) + n + TAG_BYTES)
    out[: len(header)] = header
    body = memoryview(out)[len(header) :]
    # The chaotic layer writes straight into the token and the AEAD seals it
    # in place (OpenSSL allows exact aliasing): no extra full-size buffers.
    native.cipher_encrypt(payload, seed, out=np.frombuffer(out, np.uint8, n, len(header)))
    cipher = _AEAD_CLASSES[aead_id](aead_key)
    try:
        cipher.encrypt_into(nonce, body[:n], header, body)
    except (AttributeError, TypeError, ValueError):  # older cryptography, or aliasing refused
        body[:] = cipher.encrypt(nonce, bytes(body[:n]), header)
    return bytes(out)


def seal_array(
    key: bytes, array: np.ndarray, *, metadata: dict[str, Any] | None = None,
    aead: str = "chacha20poly1305", key_id: bytes | None = None,
) -> bytes:
    """Encrypt a raw frame (any shape up to 4-D, dtypes u8/u16/i16/i32/f32/f64)."""
    arr = np.asarray(array)
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
    if dtype not in _DTYPE_CODES:
        raise CryptoError(f"dtype {arr.dtype} is not supported")
    data = np.asarray(arr, dtype=dtype, order="C")  # keeps 0-d arrays 0-d
    return _seal(key, native.as_bytes_view(data), KIND_ARRAY, dtype, data.shape, metadata, aead, key_id)


def describe_image(data: bytes) -> dict[str, Any]:
    """Decode an encoded image just enough to prove it is one; typed error otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, size, mode = im.format, im.size, im.mode
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"not a decodable image: {exc}") from None
    return {"format": fmt, "width": size[0], "height": size[1], "mode": mode}


def seal_file_bytes(
    key: bytes, data: bytes, *, metadata: dict[str, Any] | None = None,
    aead: str = "chacha20poly1305", key_id: bytes | None = None, check_image: bool = True,
) -> bytes:
    """Encrypt an encoded image file as is, so decryption gives back the same bytes."""
    meta = dict(metadata or {})
    if check_image:
        meta.setdefault("image", describe_image(data))
    payload = np.frombuffer(data, dtype=np.uint8)
    return _seal(key, payload, KIND_FILE, np.dtype("u1"), (payload.size,), meta, aead, key_id)


def open_(key: bytes, token: bytes | bytearray | memoryview) -> Opened:
    """Verify and decrypt a token; raises a typed error and returns nothing on any doubt."""
    _check_key(key)
    header = read_header(token)
    if header.key_id != key_id_for(bytes(key)):
        raise WrongKeyError("this container was sealed under a different key")
    return _open_with(key, token, header)


def open_with_key_id(key: bytes, token: bytes | bytearray | memoryview) -> Opened:
    """Like `open_`, for callers that set their own key_id when sealing."""
    _check_key(key)
    return _open_with(key, token, read_header(token))


def _open_with(key: bytes, token: bytes | bytearray | memoryview, header: Header) -> Opened:
    buf = memoryview(token)
    hdr = bytes(buf[: header.length])
    aead_key, seed = _derive(bytes(key), header.salt, hdr[: _FIXED.size])
    cipher = _AEAD_CLASSES[header.aead_id](aead_key)
    body = buf[header.length :]
    scrambled = np.empty(header.payload_bytes, dtype=np.uint8)
    try:
        if hasattr(cipher, "decrypt_into"):
            cipher.decrypt_into(header.nonce, body, hdr, scrambled)
        else:  # cryptography < 46
            scrambled[:] = np.frombuffer(cipher.decrypt(header.nonce, bytes(body), hdr), dtype=np.uint8)
    except InvalidTag:
        raise AuthenticationError("the container failed authentication: altered, or the wrong key") from None
    plain = native.cipher_decrypt(scrambled, seed)
    if header.kind == KIND_FILE:
        return Opened(header, data=plain.tobytes(), metadata=header.metadata)
    array = plain.view(header.dtype).reshape(header.shape)
    return Opened(header, array=array, metadata=header.metadata)
