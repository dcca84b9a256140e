"""The on-disk keystore file: a versioned, checksummed envelope around sealed blobs.

Layout (format 1)::

    b"FLKS" | u16 format | u32 length | JSON payload (UTF-8) | SHA-256(everything before)

The JSON holds the backend name, the backend's public parameters (KDF salt,
KEK check value, TPM handle...) and for each key id its versions, each a
base64 blob that only the backend can unseal.  The checksum only detects
accidental damage (torn sector, bit rot) so that it surfaces as
KeystoreCorruptError; secrecy and integrity of the keys come from the
backend's sealing (AEAD or TPM), which also binds each blob to its id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware import boundedjson
from firmware.keystore.errors import KeystoreCorruptError

MAGIC = b"FLKS"
FORMAT = 1
_HEAD = struct.Struct(">4sHI")


@dataclass
class KeyRecord:
    current: int
    versions: dict[int, bytes]  # version -> sealed blob


@dataclass
class KeyFileData:
    backend: str
    params: dict[str, Any]
    keys: dict[str, KeyRecord] = field(default_factory=dict)


def encode(data: KeyFileData) -> bytes:
    payload = json.dumps(
        {
            "backend": data.backend,
            "params": data.params,
            "keys": {
                kid: {
                    "current": rec.current,
                    "versions": {str(v): base64.b64encode(b).decode() for v, b in rec.versions.items()},
                }
                for kid, rec in sorted(data.keys.items())
            },
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    body = _HEAD.pack(MAGIC, FORMAT, len(payload)) + payload
    return body + hashlib.sha256(body).digest()


def decode(raw: bytes, where: Path | str = "keystore") -> KeyFileData:
    if len(raw) < _HEAD.size + 32:
        raise KeystoreCorruptError(f"{where}: truncated ({len(raw)} bytes)")
    magic, fmt, n = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise KeystoreCorruptError(f"{where}: not a FaceLock keystore (bad magic)")
    if fmt != FORMAT:
        raise KeystoreCorruptError(f"{where}: unsupported keystore format {fmt} (this build reads {FORMAT})")
    if len(raw) != _HEAD.size + n + 32:
        raise KeystoreCorruptError(f"{where}: length field does not match the file size")
    body, digest = raw[:-32], raw[-32:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
        raise KeystoreCorruptError(f"{where}: checksum mismatch (the file was damaged or altered)")
    try:
        obj = boundedjson.loads(body[_HEAD.size :])
        keys = {
            str(kid): KeyRecord(
                current=int(rec["current"]),
                versions={int(v): base64.b64decode(b, validate=True) for v, b in rec["versions"].items()},
            )
            for kid, rec in obj["keys"].items()
        }
        return KeyFileData(backend=str(obj["backend"]), params=dict(obj["params"]), keys=keys)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeystoreCorruptError(f"{where}: malformed payload ({exc.__class__.__name__}: {exc})") from None
