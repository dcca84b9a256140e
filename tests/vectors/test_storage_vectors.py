"""Known-answer vectors of the at-rest formats, checked in both directions (see storage_vectors.py).

1. decode: the product opens each stored vector and gets the recorded plaintext / secrets;
2. decode again with an independent decoder written from the README's format tables (struct, HKDF,
   scrypt, the AEAD and the numpy reference of the chaotic layer; no FaceLock parsing code), so the
   README and the bytes cannot drift apart;
3. encode: the product, given the vector's inputs and its fixed randomness, writes the stored bytes
   exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tests.vectors import storage_vectors as sv


def _load(name: str) -> list[dict]:
    return json.loads(sv.FILES[name].read_text())["vectors"]


CONTAINER = _load("container")
DTYPES = {1: "u1", 2: "<u2", 3: "<i2", 4: "<i4", 5: "<f4", 6: "<f8"}


# ------------------------------------------------------------------------------------------ container
def readme_open_container(key: bytes, token: bytes) -> tuple[dict, bytes]:
    """FLKC v1 per the README's table, with the numpy reference of the chaotic layer."""
    from firmware.crypto.hazmat import reference

    magic, version, aead_id, chaos_id, kind, key_id, salt, nonce, dcode, ndim, meta_len = struct.unpack_from(
        ">4sBBBB16s16s12sBBI", token)
    assert (magic, version, chaos_id) == (b"FLKC", 1, 1) and kind in (0, 1)
    fixed = token[:58]
    off = 58 + 4 * ndim
    shape = struct.unpack_from(f">{ndim}I", token, 58)
    meta = json.loads(token[off:off + meta_len]) if meta_len else {}
    header = token[:off + meta_len]
    assert key_id == HKDF(hashes.SHA256(), 16, salt=None, info=b"facelock key id v1").derive(key)
    okm = HKDF(hashes.SHA256(), 32 + 2368, salt=salt, info=b"facelock image v1|" + fixed).derive(key)
    aead = {1: ChaCha20Poly1305, 2: AESGCM}[aead_id](okm[:32])
    scrambled = aead.decrypt(nonce, token[len(header):], header)
    plain = reference.cipher_decrypt(np.frombuffer(scrambled, np.uint8), okm[32:]).tobytes()
    assert len(plain) == np.dtype(DTYPES[dcode]).itemsize * int(np.prod(shape, dtype=np.int64))
    return meta, plain


@pytest.mark.parametrize("v", CONTAINER, ids=[v["name"] for v in CONTAINER])
def test_container_vector_decodes(v):
    from firmware.crypto import container

    key, token = bytes.fromhex(v["key"]), bytes.fromhex(v["token"])
    opened = container.open_(key, token)
    got = opened.data if v["kind"] == "file" else opened.array.tobytes()
    assert got == bytes.fromhex(v["plaintext"])
    if v["kind"] == "array":
        assert opened.array.shape == tuple(v["shape"]) and opened.array.dtype == np.dtype(v["dtype"])
    assert opened.metadata == v["metadata"]
    meta, plain = readme_open_container(key, token)
    assert plain == bytes.fromhex(v["plaintext"]) and meta == v["metadata"]


@pytest.mark.parametrize("v", CONTAINER, ids=[v["name"] for v in CONTAINER])
def test_container_vector_encodes_to_the_same_bytes(v):
    case = next(c for c in sv.CONTAINER_CASES if c["name"] == v["name"])
    token = sv.container_encode(case, bytes.fromhex(v["key"]), bytes.fromhex(v["salt"]), bytes.fromhex(v["nonce"]))
    assert token.hex() == v["token"]


# ------------------------------------------------------------------------------------------- keystore
def test_keystore_vector_decodes(tmp_path):
    from firmware.keystore.file_backend import FileKeystore

    (v,) = _load("keystore")
    raw = bytes.fromhex(v["keys_fks"])
    (tmp_path / "keystore").mkdir()
    (tmp_path / "keystore" / "keys.fks").write_bytes(raw)
    ds = tmp_path / "device.secret"
    ds.write_bytes(bytes.fromhex(v["device_secret"]))
    ks = FileKeystore(tmp_path / "keystore", device_secret_path=ds, passphrase=v["passphrase"])
    for key_id, secret, _nonce in v["keys"]:
        assert ks.unseal(key_id) == bytes.fromhex(secret)
    # the README's description: FLKS | u16 format | u32 len | JSON | SHA-256; KEK = scrypt(u16 len(ds) ‖ ds ‖ pass)
    magic, fmt, n = struct.unpack_from(">4sHI", raw)
    assert (magic, fmt, len(raw)) == (b"FLKS", 1, 10 + n + 32)
    assert hashlib.sha256(raw[:-32]).digest() == raw[-32:]
    doc = json.loads(raw[10:10 + n])
    params = doc["params"]
    dsb = bytes.fromhex(v["device_secret"])
    kek = Scrypt(salt=base64.b64decode(params["salt"]), length=32, n=1 << params["log2n"], r=params["r"],
                 p=params["p"]).derive(len(dsb).to_bytes(2, "big") + dsb + v["passphrase"].encode())
    check = base64.b64decode(params["check"])
    assert ChaCha20Poly1305(kek).decrypt(check[:12], check[12:], b"facelock keystore kek-check v1") == b""
    for key_id, secret, _nonce in v["keys"]:
        rec = doc["keys"][key_id]
        blob = base64.b64decode(rec["versions"][str(rec["current"])])
        aad = f"facelock keystore v1|file|{key_id}|{rec['current']}".encode()
        assert ChaCha20Poly1305(kek).decrypt(blob[:12], blob[12:], aad) == bytes.fromhex(secret)


def test_keystore_vector_encodes_to_the_same_bytes(tmp_path):
    (v,) = _load("keystore")
    assert sv.keystore_encode(sv.KEYSTORE_CASE, tmp_path).hex() == v["keys_fks"]


# --------------------------------------------------------------------------------------------- backup
def test_backup_vector_decodes():
    from provisioning import backup

    (v,) = _load("backup")
    blob, pw = bytes.fromhex(v["bundle"]), v["passphrase"].encode()
    b = backup.open_(pw, blob)
    assert b.manifest == v["manifest"] and b.created == v["created"]
    assert b.entries == {k: base64.b64decode(x) for k, x in v["entries"].items()}
    # the README's description: magic · version · kdf · log2 N · r · p · salt · nonce · AEAD(header as AAD)
    magic, version, kdf, log2n, r, p, salt, nonce = struct.unpack_from(">4sBBBBB16s12s", blob)
    assert (magic, version, kdf, log2n, r, p) == (b"FLBK", 1, 1, v["log2n"], v["r"], v["p"])
    key = Scrypt(salt=salt, length=32, n=1 << log2n, r=r, p=p).derive(pw)
    doc = json.loads(ChaCha20Poly1305(key).decrypt(nonce, blob[37:], blob[:37]))
    assert doc["format"] == "facelock-backup" and doc["version"] == 1 and doc["manifest"] == v["manifest"]


def test_backup_vector_encodes_to_the_same_bytes():
    (v,) = _load("backup")
    assert sv.backup_encode(sv.BACKUP_CASE).hex() == v["bundle"]

