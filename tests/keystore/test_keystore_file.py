"""File-backend specifics: passphrase, device secret, KEK rotation, config validation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from firmware.config_errors import ConfigError
from firmware.keystore import (
    KeystoreConfig,
    KeystoreUnlockError,
    WrongPassphraseError,
    open_keystore,
)

FAST = {"scrypt_log2_n": 10}


def test_wrong_passphrase_is_a_typed_error(tmp_path):
    ks = open_keystore(KeystoreConfig(**FAST), tmp_path, passphrase="correct horse")
    ks.create("k", secret=b"k" * 32)
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        open_keystore(KeystoreConfig(**FAST), tmp_path, passphrase="battery staple")
    with pytest.raises(WrongPassphraseError):
        open_keystore(KeystoreConfig(**FAST), tmp_path)  # no passphrase at all
    assert open_keystore(KeystoreConfig(**FAST), tmp_path, passphrase="correct horse").unseal("k") == b"k" * 32


def test_passphrase_from_environment(tmp_path, monkeypatch):
    cfg = KeystoreConfig(passphrase_env="FL_TEST_PASS", **FAST)
    monkeypatch.delenv("FL_TEST_PASS", raising=False)
    with pytest.raises(KeystoreUnlockError, match="FL_TEST_PASS"):
        open_keystore(cfg, tmp_path)
    monkeypatch.setenv("FL_TEST_PASS", "pw")
    open_keystore(cfg, tmp_path).create("k", secret=b"e" * 32)
    assert open_keystore(KeystoreConfig(**FAST), tmp_path, passphrase="pw").unseal("k") == b"e" * 32


def test_other_device_secret_cannot_open(tmp_path, monkeypatch):
    secret_file = tmp_path / "etc" / "device.secret"
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", str(secret_file))
    ks = open_keystore(KeystoreConfig(**FAST), tmp_path)
    ks.create("k")
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    secret_file.write_bytes(os.urandom(32))
    with pytest.raises(WrongPassphraseError):
        open_keystore(KeystoreConfig(**FAST), tmp_path)
    secret_file.write_bytes(b"short")
    with pytest.raises(KeystoreUnlockError, match="expected 32"):
        open_keystore(KeystoreConfig(**FAST), tmp_path)


def test_device_secret_defaults_outside_the_data_dir(tmp_path, monkeypatch):
    """Config > $FACELOCK_DEVICE_SECRET > /etc/facelock/device.secret; never the data dir by default."""
    from firmware.keystore.file_backend import DEFAULT_DEVICE_SECRET, device_secret_path

    monkeypatch.delenv("FACELOCK_DEVICE_SECRET", raising=False)
    assert device_secret_path(None) == DEFAULT_DEVICE_SECRET == Path("/etc/facelock/device.secret")
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", str(tmp_path / "m" / "ds"))
    assert device_secret_path(None) == tmp_path / "m" / "ds"
    assert device_secret_path("/x/y") == Path("/x/y")
    ks = open_keystore(KeystoreConfig(**FAST), tmp_path / "data")
    ks.create("k")
    assert (tmp_path / "m" / "ds").is_file()
    assert not any(p.name == "device.secret" for p in (tmp_path / "data").rglob("*"))


def test_device_secret_outside_data_dir(tmp_path):
    cfg = KeystoreConfig(device_secret_path=str(tmp_path / "etc" / "device.secret"), **FAST)
    open_keystore(cfg, tmp_path / "data").create("k", secret=b"o" * 32)
    assert not (tmp_path / "data" / "keystore" / "device.secret").exists()
    assert open_keystore(cfg, tmp_path / "data").unseal("k") == b"o" * 32


def test_rewrap_changes_kek_without_loss(tmp_path):
    ks = open_keystore(KeystoreConfig(**FAST), tmp_path, passphrase="old")
    ks.create("a", secret=b"a" * 32)
    ks.rotate("a", secret=b"A" * 32)
    ks.create("b", secret=b"b" * 32)
    before = ks.path.read_bytes()
    ks.rewrap(new_passphrase="new")
    assert ks.path.read_bytes() != before
    with pytest.raises(WrongPassphraseError):
        open_keystore(KeystoreConfig(**FAST), tmp_path, passphrase="old")
    again = open_keystore(KeystoreConfig(**FAST), tmp_path, passphrase="new")
    assert again.unseal("a", 1) == b"a" * 32
    assert again.unseal("a") == b"A" * 32
    assert again.unseal("b") == b"b" * 32


def test_config_from_dict_refuses_unknown_and_bad_values():
    assert KeystoreConfig.from_dict({"backend": "tpm", "tpm_pcrs": [7]}).tpm_pcrs == (7,)
    with pytest.raises(ConfigError, match="keystore.colour"):
        KeystoreConfig.from_dict({"colour": "red"})
    with pytest.raises(ConfigError, match="keystore.backend"):
        KeystoreConfig.from_dict({"backend": "hsm"})
    with pytest.raises(ConfigError, match="keystore.tpm_pcrs"):
        KeystoreConfig.from_dict({"tpm_pcrs": [24]})
    with pytest.raises(ConfigError, match="keystore.tpm_primary_handle"):
        KeystoreConfig.from_dict({"tpm_primary_handle": 0x80000000})
    with pytest.raises(ConfigError, match="keystore.scrypt_log2_n"):
        KeystoreConfig.from_dict({"scrypt_log2_n": True})


def test_missing_device_secret_is_reported_not_replaced(tmp_path, monkeypatch):
    """A keystore whose device secret vanished says so, and does not mint a decoy secret."""
    secret_file = tmp_path / "etc" / "device.secret"
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", str(secret_file))
    open_keystore(KeystoreConfig(**FAST), tmp_path).create("k", secret=b"m" * 32)
    saved = secret_file.read_bytes()
    secret_file.unlink()
    with pytest.raises(KeystoreUnlockError, match="device secret .* is missing"):
        open_keystore(KeystoreConfig(**FAST), tmp_path)
    assert not secret_file.exists()
    secret_file.write_bytes(saved)  # restored: everything is back
    assert open_keystore(KeystoreConfig(**FAST), tmp_path).unseal("k") == b"m" * 32


def test_device_secret_is_created_once_durably(tmp_path):
    cfg = KeystoreConfig(device_secret_path=str(tmp_path / "etc" / "device.secret"), **FAST)
    open_keystore(cfg, tmp_path / "data")
    secret_file = tmp_path / "etc" / "device.secret"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(secret_file.parent).st_mode) == 0o700
    assert sorted(p.name for p in secret_file.parent.iterdir()) == ["device.secret"]  # no temp or link left
    first = secret_file.read_bytes()
    open_keystore(cfg, tmp_path / "data2")  # another keystore with the same device secret reuses it
    assert secret_file.read_bytes() == first


def test_legacy_device_secret_moves_out_of_the_data_dir(tmp_path, monkeypatch):
    """A keystore made when the secret lived in <data_dir>/keystore/ opens after the upgrade, secret moved out."""
    legacy = tmp_path / "data" / "keystore" / "device.secret"
    old = KeystoreConfig(device_secret_path=str(legacy), **FAST)
    open_keystore(old, tmp_path / "data").create("k", secret=b"l" * 32)
    saved = legacy.read_bytes()
    new = tmp_path / "etc" / "facelock" / "device.secret"
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", str(new))
    assert open_keystore(KeystoreConfig(**FAST), tmp_path / "data").unseal("k") == b"l" * 32
    assert new.read_bytes() == saved and not legacy.exists()
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o600
    assert open_keystore(KeystoreConfig(**FAST), tmp_path / "data").unseal("k") == b"l" * 32
    # killed between the two steps: both copies, equal -> the old one goes; different -> refused, none lost
    legacy.write_bytes(saved)
    open_keystore(KeystoreConfig(**FAST), tmp_path / "data")
    assert not legacy.exists()
    legacy.write_bytes(os.urandom(32))
    with pytest.raises(KeystoreUnlockError, match="differ"):
        open_keystore(KeystoreConfig(**FAST), tmp_path / "data")
    assert new.read_bytes() == saved and legacy.exists()
