"""The centre's keystore secret is not in its data dir: a copy of the data dir opens none of its keys, and
a centre made with the old layout (secret in keystore/device.secret) has it moved out on the next open."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from central.errors import KeyError_
from central.keys import CentreKeys


def _files(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.is_file()]


def test_the_secret_lives_beside_the_data_dir_and_a_copy_opens_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FACELOCK_CENTRAL_SECRET", raising=False)
    keys = CentreKeys(tmp_path / "centre", scrypt_log2_n=10)
    keys.init()
    secret = (tmp_path / "centre.secret").read_bytes()
    assert len(secret) == 32 and (tmp_path / "centre.secret").stat().st_mode & 0o777 == 0o600
    assert not any(p.name == "device.secret" or secret in p.read_bytes() for p in _files(tmp_path / "centre"))
    pub = keys.public_key_pem()
    assert CentreKeys(tmp_path / "centre", scrypt_log2_n=10).public_key_pem() == pub  # reopens with it
    shutil.copytree(tmp_path / "centre", tmp_path / "elsewhere" / "copy")  # a backup of the data dir only
    with pytest.raises(KeyError_):
        CentreKeys(tmp_path / "elsewhere" / "copy", scrypt_log2_n=10).signing_key()


def test_an_old_centre_has_its_secret_moved_out(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FACELOCK_CENTRAL_SECRET", raising=False)
    data = tmp_path / "old"
    legacy = data / "keystore" / "device.secret"
    old = CentreKeys(data, scrypt_log2_n=10, secret_file=legacy)  # the layout before this change
    old.init()
    pub = old.public_key_pem()
    assert legacy.exists()
    keys = CentreKeys(data, scrypt_log2_n=10)
    assert keys.public_key_pem() == pub and not legacy.exists() and (tmp_path / "old.secret").exists()


def test_the_secret_can_be_placed_by_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FACELOCK_CENTRAL_SECRET", str(tmp_path / "etc" / "centre.secret"))
    CentreKeys(tmp_path / "c", scrypt_log2_n=10).init()
    assert (tmp_path / "etc" / "centre.secret").exists() and not (tmp_path / "c.secret").exists()
