"""Trust boundary: JSON inside files an attacker can write (issue 11, item 12, the JSON half).

The attacker nests JSON 30,000-100,000 levels deep where FaceLock parses JSON from a file: the
metadata of an image container (parsed before any key is involved: `facelock decrypt` reads the
owner from it), the keystore file (its checksum is not a MAC), a user's policy column in users.db
(e.g. restored from a backup bundle), and a backup's payload.  Before the fix each raised
`RecursionError` (a traceback out of `facelock decrypt`).  Now `firmware.boundedjson` measures the
depth first (linear, no recursion) and each reader raises its own typed error; the CLI prints one
line and exits 1 (bad input, documented in the README).
"""

from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from firmware.crypto import container
from firmware.crypto.errors import ContainerFormatError

REPO = Path(__file__).resolve().parents[2]
DEEP = 30_000  # 60 KB of brackets: fits the container's 64 KiB metadata limit


def nested(depth: int = DEEP) -> bytes:
    return b'{"facelock":{"user_id":"u","x":' + b"[" * depth + b"]" * depth + b"}}"


def hostile_container(meta: bytes) -> bytes:
    """A well-formed container header (file kind, empty payload) carrying the given metadata bytes."""
    fixed = container._FIXED.pack(container.MAGIC, container.VERSION, container.AEAD_CHACHA20_POLY1305,
                                  container.CHAOS_CML64_V1, container.KIND_FILE, os.urandom(16), os.urandom(16),
                                  os.urandom(12), 1, 1, len(meta))
    return fixed + struct.pack(">I", 0) + meta + os.urandom(container.TAG_BYTES)


def test_nested_container_metadata_is_a_typed_error():
    token = hostile_container(nested())
    with pytest.raises(ContainerFormatError, match="nested 30002 levels deep"):
        container.read_header(token)
    with pytest.raises(ContainerFormatError):
        container.open_(b"k" * 32, token)
    # a shallow document with brackets inside strings is fine: strings do not count
    ok = hostile_container(b'{"facelock":{"user_id":"[[[[{{{{\\"[[["}}')
    assert container.read_header(ok).metadata["facelock"]["user_id"] == '[[[[{{{{"[[['


def test_facelock_decrypt_of_nested_metadata_is_one_line_exit_1(tmp_path):
    """The real CLI in a subprocess, on an initialised device."""
    from tests.provisioning.conftest import Cli

    cli = Cli(tmp_path / "data")
    cli("ca", "init", ok=True)
    cli("device", "init", "--id", "door-1", ok=True)
    flk = tmp_path / "hostile.flk"
    flk.write_bytes(hostile_container(nested()))
    probe = tmp_path / "probe.png"
    probe.write_bytes(b"not even read")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               FACELOCK_PASSPHRASE=cli.passphrase)
    proc = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "decrypt", str(flk), "--probe", str(probe),
         "-o", str(tmp_path / "out.jpg"), "--data-dir", str(cli.data_dir)],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("facelock: error: "), proc.stderr[-2000:]
    assert "nested" in lines[0] and "limit is 32" in lines[0], lines[0]
    assert not (tmp_path / "out.jpg").exists()


def test_nested_keystore_payload_is_a_typed_error(tmp_path):
    from firmware.keystore import KeystoreConfig, KeystoreCorruptError, keyfile, open_keystore

    cfg = KeystoreConfig(scrypt_log2_n=10, device_secret_path=str(tmp_path / "etc" / "device.secret"))
    open_keystore(cfg, tmp_path / "data").create("templates")
    path = tmp_path / "data" / "keystore" / "keys.fks"
    payload = b'{"backend":"file","keys":' + b"[" * 100_000 + b"]" * 100_000 + b',"params":{}}'
    body = keyfile._HEAD.pack(keyfile.MAGIC, keyfile.FORMAT, len(payload)) + payload
    import hashlib

    path.write_bytes(body + hashlib.sha256(body).digest())  # the checksum is recomputed: it is not a MAC
    with pytest.raises(KeystoreCorruptError, match="nested 100001 levels deep"):
        open_keystore(cfg, tmp_path / "data")


def test_nested_policy_in_users_db_is_a_typed_error(tmp_path):
    """A users.db row (e.g. from a crafted backup bundle) whose policy nests deeply."""
    import numpy as np

    from firmware.keystore import KeystoreConfig, open_keystore
    from firmware.templates import TemplateStore
    from firmware.templates.errors import TemplateStoreCorruptError

    data = tmp_path / "data"
    cfg = KeystoreConfig(scrypt_log2_n=10, device_secret_path=str(tmp_path / "etc" / "device.secret"))
    rng = np.random.default_rng(3)
    with TemplateStore(data, open_keystore(cfg, data)) as store:
        uid = store.enroll("mallory", rng.standard_normal((3, 128)).astype(np.float32))
    db = sqlite3.connect(data / "users.db")
    db.execute("UPDATE users SET policy = ? WHERE id = ?", ("[" * 100_000 + "]" * 100_000, uid))
    db.commit()
    db.close()
    with TemplateStore(data, open_keystore(cfg, data)) as store, pytest.raises(TemplateStoreCorruptError,
                                                                                match="nested"):
        store.list(include_revoked=True)


def test_nested_backup_payload_is_a_typed_error():
    """Even a correctly sealed bundle (the attacker knows the passphrase) cannot crash the import."""
    from provisioning import backup

    pw = b"known passphrase"
    salt, nonce = os.urandom(16), os.urandom(12)
    header = backup._HEADER.pack(backup.MAGIC, backup.VERSION, backup.KDF_SCRYPT, 10, 8, 1, salt, nonce)
    key = backup._params(10, 8, 1).derive(pw, salt)
    payload = b'{"format":"facelock-backup","version":1,"manifest":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    blob = header + ChaCha20Poly1305(key).encrypt(nonce, payload, header)
    with pytest.raises(backup.BackupError, match="nested 100001 levels deep"):
        backup.open_(pw, blob)


def test_depth_scan_is_linear_on_hostile_strings():
    """Runs of escaped quotes and unterminated strings cannot make the pre-scan quadratic."""
    from firmware import boundedjson

    for text in ('"' + '\\"' * 500_000, '["' + "\\" * 1_000_001, '"a' * 300_000, "[" * 1_000_000):
        t0 = time.perf_counter()
        boundedjson.depth(text)
        assert time.perf_counter() - t0 < 2.0, text[:10]
    assert boundedjson.depth('{"a":[1,{"b":"]]]]"}],"c":"\\"[["}') == 3
    assert boundedjson.loads(b'{"a":[[1]]}') == {"a": [[1]]}
    with pytest.raises(boundedjson.JsonDepthError):
        boundedjson.loads("[" * 33 + "]" * 33)
