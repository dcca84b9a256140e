"""The acceptance workflow on a fresh data dir, through the real CLI, models, keystore and SQLite.

ca init -> device init -> enroll A and B from images -> encrypt an image as A -> decrypt with A's probe
(bit-exact) -> decrypt with B's probe refused -> purge A -> A's files cannot be decrypted by anyone, and
nothing of A remains in the data dir.  Then backup export/import into another data dir.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.provisioning.conftest import Cli, assert_one_line_error

NAME_A = "Eileen Astronaut"  # a distinctive name to scan the data dir for after purge
NAME_B = "Grace Hopper"


def chunks(blob: bytes, size: int = 32, step: int = 128) -> list[bytes]:
    """Slices of a stored blob: SQLite splits long BLOBs over overflow pages, so search for pieces."""
    return [blob[i : i + size] for i in range(0, max(len(blob) - size, 0) + 1, step)]


def all_bytes(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def setup_device(cli: Cli, faces) -> tuple[str, str]:
    cli("ca", "init", ok=True)
    cli("device", "init", "--id", "front-door", ok=True)
    ra = cli("enroll", NAME_A, "--images", faces.a_dir, ok=True)
    rb = cli("enroll", NAME_B, "--images", faces.b_dir, ok=True)
    uid_a, uid_b = ra.stdout.strip(), rb.stdout.strip()
    assert uid_a and uid_b and uid_a != uid_b
    return uid_a, uid_b


@pytest.fixture
def enrolled(cli: Cli, faces):
    uid_a, uid_b = setup_device(cli, faces)
    return cli, uid_a, uid_b


def test_end_to_end_encrypt_decrypt_refuse_purge(enrolled, faces, tmp_path):
    cli, uid_a, uid_b = enrolled
    listed = json.loads(cli("users", "list", "--json", ok=True).stdout)
    assert {u["name"] for u in listed} == {NAME_A, NAME_B}

    enc = tmp_path / "secret.flk"
    cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.a_probe, "-o", enc, ok=True)
    original = faces.secret.read_bytes()
    sealed = enc.read_bytes()
    assert original not in sealed and original[:4096] not in sealed

    out = tmp_path / "back.jpg"
    cli("decrypt", enc, "--probe", faces.a_probe, "-o", out, ok=True)
    assert out.read_bytes() == original  # bit-exact

    # B's face is refused (exit 3), and nothing is written
    refused = tmp_path / "refused.jpg"
    r = cli("decrypt", enc, "--probe", faces.b_probe, "-o", refused)
    assert_one_line_error(r, 3)
    assert not refused.exists()
    # B cannot encrypt as A either
    assert_one_line_error(cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.b_probe,
                              "-o", tmp_path / "x.flk"), 3)

    # purge A: everything of A goes, B keeps working
    before = all_bytes(cli.data_dir)
    a_files = _secrets_of(cli, uid_a)
    cli("users", "purge", NAME_A, "--yes", ok=True)
    for probe in (faces.a_probe, faces.b_probe):
        r = cli("decrypt", enc, "--probe", probe, "-o", tmp_path / "after.jpg")
        assert_one_line_error(r)
        assert not (tmp_path / "after.jpg").exists()
    after = all_bytes(cli.data_dir)
    for path, data in after.items():
        assert NAME_A.encode() not in data, f"A's name left in {path}"
        assert uid_a.encode() not in data, f"A's user id left in {path}"
        for label, secret in a_files.items():
            assert not any(c in data for c in chunks(secret)), f"A's {label} left in {path}"
    # what was stored about A really was in the data dir before the purge (so the scan can fail)
    markers = {"name": [NAME_A.encode()], "user id": [uid_a.encode()], **{k: chunks(v) for k, v in a_files.items()}}
    for label, pieces in markers.items():
        assert any(c in d for c in pieces for d in before.values()), f"{label} was not found before the purge"
    assert set(a_files) >= {"template ciphertext", "helper ciphertext", "sealed user secret v1"}
    # the audit log kept its chain (append-only) and holds only pseudonyms
    from firmware.audit import AuditLog

    with AuditLog(cli.data_dir / "audit.db", readonly=True) as log:
        assert log.verify().ok
        kinds = [r.kind for r in log.records()]
    assert "provisioning.user_purged" in kinds and "provisioning.image_encrypted" in kinds
    # and no other key of the device can open A's file: try every keystore secret left
    from firmware.crypto import container
    from firmware.crypto.errors import CryptoError
    from provisioning import stores
    from provisioning.datadir import DataDir

    ks = stores.open_keystore(DataDir(cli.data_dir))
    for key_id in ks.list_ids():
        for v in ks.versions(key_id):
            secret = ks.unseal(key_id, v)
            if len(secret) == 32:
                with pytest.raises(CryptoError):
                    container.open_(secret, enc.read_bytes())
    # B is untouched
    enc_b = tmp_path / "b.flk"
    cli("encrypt", faces.secret, "--user", NAME_B, "--probe", faces.b_probe, "-o", enc_b, ok=True)
    cli("decrypt", enc_b, "--probe", faces.b_probe, "-o", tmp_path / "b.jpg", ok=True)
    assert (tmp_path / "b.jpg").read_bytes() == original


def _secrets_of(cli: Cli, user_id: str) -> dict[str, bytes]:
    """The stored byte strings that belong to one user (sealed secret, template rows), for the scan."""
    from provisioning import stores
    from provisioning.datadir import DataDir

    return stores.users(DataDir(cli.data_dir)).stored_bytes_of(user_id)


def test_backup_export_import_restores_a_working_lock(enrolled, faces, tmp_path):
    cli, uid_a, uid_b = enrolled
    enc = tmp_path / "secret.flk"
    cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.a_probe, "-o", enc, ok=True)
    cli("policy", "set", NAME_B, "--days", "mon-fri", "--from", "08:00", "--to", "18:00", ok=True)
    bundle = tmp_path / "facelock.bak"
    cli("backup", "export", "-o", bundle, ok=True)
    assert NAME_A.encode() not in bundle.read_bytes()

    other = tmp_path / "other"
    # the other device is another machine: its own device secret (outside its data dir)
    other_machine = {"FACELOCK_DEVICE_SECRET": str(tmp_path / "other-machine" / "device.secret")}
    # wrong passphrase: one line, nothing written into the target
    r = cli("backup", "import", bundle, data_dir=other, env={**other_machine, "FACELOCK_PASSPHRASE": "not it"})
    assert_one_line_error(r, 1, "wrong passphrase")
    assert not (other / "device" / "device.json").exists()

    cli("backup", "import", bundle, data_dir=other, env=other_machine, ok=True)
    assert str(other.resolve()) in (other / "device" / "mqtt.toml").read_text()  # paths of the new dir
    # the other machine has its own device secret, and neither lives in a data dir
    assert (tmp_path / "other-machine" / "device.secret").read_bytes() != Path(
        os.environ["FACELOCK_DEVICE_SECRET"]).read_bytes()
    assert not list(other.rglob("device.secret")) and not list(cli.data_dir.rglob("device.secret"))
    users = {u["name"]: u for u in json.loads(cli("users", "list", "--json", data_dir=other, env=other_machine, ok=True).stdout)}
    assert set(users) == {NAME_A, NAME_B}
    assert users[NAME_B]["policy"]["schedule"][0]["days"] == ["mon", "tue", "wed", "thu", "fri"]
    out = tmp_path / "restored.jpg"
    cli("decrypt", enc, "--probe", faces.a_probe, "-o", out, data_dir=other, env=other_machine, ok=True)
    assert out.read_bytes() == faces.secret.read_bytes()
    # A and B both verify on the restored device; B still cannot open A's file
    assert_one_line_error(cli("decrypt", enc, "--probe", faces.b_probe, "-o", tmp_path / "no.jpg", data_dir=other, env=other_machine), 3)
    enc_b = tmp_path / "b.flk"
    cli("encrypt", faces.secret, "--user", NAME_B, "--probe", faces.b_probe, "-o", enc_b, data_dir=other, env=other_machine, ok=True)
    cli("decrypt", enc_b, "--probe", faces.b_probe, "-o", tmp_path / "b.jpg", data_dir=other, env=other_machine, ok=True)
    # importing again over a populated dir needs --force
    assert_one_line_error(cli("backup", "import", bundle, data_dir=other, env=other_machine), 1, "already")
