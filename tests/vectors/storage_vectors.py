"""Known-answer vectors of the three at-rest formats: image container (FLKC v1), file keystore (FLKS 1),
backup bundle (FLBK v1).

Each vector fixes every random input (salts, nonces, the creation time) and records the exact bytes the
product writes.  `tests/vectors/test_storage_vectors.py` checks both directions: the product decodes
each stored vector (and an independent decoder written from the README's format description does too),
and encoding the same inputs with the same fixed randomness gives the stored bytes exactly.

Regenerate only on a deliberate format change (then bump the format's version):

    PYTHONPATH=. python -m tests.vectors.storage_vectors
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
FILES = {"container": HERE / "container_v1.json", "keystore": HERE / "keystore_file_v1.json",
         "backup": HERE / "backup_v1.json"}


def _h(b: bytes) -> str:
    return b.hex()


@contextlib.contextmanager
def fixed_random(module: Any, chunks: list[bytes], attr: str = "_random_bytes") -> Iterator[None]:
    """Make ``module._random_bytes(n)`` return the given chunks in order (each exactly n bytes)."""
    queue = list(chunks)
    original = getattr(module, attr)

    def take(n: int) -> bytes:
        if not queue:
            raise AssertionError("the format drew more randomness than the vector fixes")
        chunk = queue.pop(0)
        if len(chunk) != n:
            raise AssertionError(f"the format drew {n} bytes where the vector fixes {len(chunk)}")
        return chunk

    setattr(module, attr, take)
    try:
        yield
        if queue:
            raise AssertionError(f"the format drew less randomness than the vector fixes ({len(queue)} left)")
    finally:
        setattr(module, attr, original)


# ------------------------------------------------------------------------------------------ container
CONTAINER_CASES = [
    {"name": "u8 array 4x8x3, ChaCha20-Poly1305, no metadata", "aead": "chacha20poly1305", "kind": "array",
     "dtype": "u1", "shape": [4, 8, 3], "metadata": {},
     "plaintext": bytes(range(96))},
    {"name": "file bytes (100), AES-256-GCM, owner metadata", "aead": "aes256gcm", "kind": "file",
     "dtype": "u1", "shape": [100], "metadata": {"facelock": {"key": "user-image-v1", "user_id": "u-0001"}},
     "plaintext": bytes((7 * i + 3) % 256 for i in range(100))},
    {"name": "f32 array 3x5, ChaCha20-Poly1305, 60 bytes (less than two cells)", "aead": "chacha20poly1305",
     "kind": "array", "dtype": "<f4", "shape": [3, 5], "metadata": {"note": "kat"},
     "plaintext": np.linspace(-1, 1, 15, dtype="<f4").tobytes()},
]


def container_encode(case: dict[str, Any], key: bytes, salt: bytes, nonce: bytes) -> bytes:
    from firmware.crypto import container

    with fixed_random(container, [salt, nonce]):
        if case["kind"] == "file":
            return container.seal_file_bytes(key, case["plaintext"], metadata=case["metadata"] or None,
                                             aead=case["aead"], check_image=False)
        arr = np.frombuffer(case["plaintext"], dtype=case["dtype"]).reshape(case["shape"])
        return container.seal_array(key, arr, metadata=case["metadata"] or None, aead=case["aead"])


def make_container_vectors() -> list[dict[str, Any]]:
    out = []
    for i, case in enumerate(CONTAINER_CASES):
        key = bytes((i * 31 + j) % 256 for j in range(32))
        salt, nonce = bytes([0x10 + i] * 16), bytes([0x20 + i] * 12)
        token = container_encode(case, key, salt, nonce)
        out.append({**{k: v for k, v in case.items() if k != "plaintext"}, "key": _h(key), "salt": _h(salt),
                    "nonce": _h(nonce), "plaintext": _h(case["plaintext"]), "token": _h(token)})
    return out


# ------------------------------------------------------------------------------------------- keystore
KEYSTORE_CASE = {"log2n": 10, "r": 8, "p": 1, "passphrase": "kat passphrase",
                 "device_secret": bytes(range(32)), "kdf_salt": bytes([0x31] * 16), "check_nonce": bytes([0x32] * 12),
                 "keys": [["templates", bytes([0x41] * 32), bytes([0x51] * 12)],
                          ["user:u-0001", bytes([0x42] * 32), bytes([0x52] * 12)]]}


def keystore_encode(case: dict[str, Any], directory: Path) -> bytes:
    """Write a file keystore with the vector's randomness; return its keys.fks bytes."""
    from firmware.keystore import file_backend
    from firmware.keystore.file_backend import FileKeystore

    ds = directory / "etc" / "device.secret"
    ds.parent.mkdir(parents=True, exist_ok=True)
    ds.write_bytes(case["device_secret"])
    chunks = [case["kdf_salt"], case["check_nonce"]] + [nonce for _, _, nonce in case["keys"]]
    with fixed_random(file_backend, chunks):
        ks = FileKeystore(directory / "keystore", device_secret_path=ds, passphrase=case["passphrase"],
                          scrypt_log2_n=case["log2n"], scrypt_r=case["r"], scrypt_p=case["p"])
        for key_id, secret, _nonce in case["keys"]:
            ks.create(key_id, secret=secret)
    return (directory / "keystore" / "keys.fks").read_bytes()


def make_keystore_vector() -> dict[str, Any]:
    c = KEYSTORE_CASE
    with tempfile.TemporaryDirectory() as d:
        raw = keystore_encode(c, Path(d))
    return {"log2n": c["log2n"], "r": c["r"], "p": c["p"], "passphrase": c["passphrase"],
            "device_secret": _h(c["device_secret"]), "kdf_salt": _h(c["kdf_salt"]),
            "check_nonce": _h(c["check_nonce"]),
            "keys": [[kid, _h(secret), _h(nonce)] for kid, secret, nonce in c["keys"]], "keys_fks": _h(raw)}


# --------------------------------------------------------------------------------------------- backup
BACKUP_CASE = {"passphrase": b"kat backup passphrase", "log2n": 10, "r": 8, "p": 1,
               "salt": bytes([0x61] * 16), "nonce": bytes([0x62] * 12), "created": "2026-01-02T03:04:05+00:00",
               "manifest": {"device_id": "door-1", "keys": {"templates": [1]}, "users": []},
               "entries": {"keystore/templates/1": bytes([0x41] * 32), "users.db": b"not really sqlite"}}


def backup_encode(case: dict[str, Any]) -> bytes:
    import datetime as dt

    from provisioning import backup

    created = dt.datetime.fromisoformat(case["created"])
    original_now = backup._now
    backup._now = lambda: created
    try:
        with fixed_random(backup, [case["salt"], case["nonce"]]):
            return backup.seal(case["passphrase"], case["manifest"], case["entries"], log2_n=case["log2n"],
                               r=case["r"], p=case["p"])
    finally:
        backup._now = original_now


def make_backup_vector() -> dict[str, Any]:
    c = BACKUP_CASE
    return {"passphrase": c["passphrase"].decode(), "log2n": c["log2n"], "r": c["r"], "p": c["p"],
            "salt": _h(c["salt"]), "nonce": _h(c["nonce"]), "created": c["created"], "manifest": c["manifest"],
            "entries": {k: base64.b64encode(v).decode() for k, v in c["entries"].items()},
            "bundle": _h(backup_encode(c))}


def main() -> None:
    FILES["container"].write_text(json.dumps({"format": "FLKC v1", "vectors": make_container_vectors()},
                                             indent=1) + "\n")
    FILES["keystore"].write_text(json.dumps({"format": "FLKS 1 (file backend)", "vectors": [make_keystore_vector()]},
                                            indent=1) + "\n")
    FILES["backup"].write_text(json.dumps({"format": "FLBK v1", "vectors": [make_backup_vector()]}, indent=1) + "\n")
    for p in FILES.values():
        print(p)


if __name__ == "__main__":
    main()
