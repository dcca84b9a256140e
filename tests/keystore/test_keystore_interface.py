"""The same interface tests run against the file backend and a real swtpm."""

from __future__ import annotations

import os
import stat

import pytest

from firmware.keystore import (
    InvalidKeyIdError,
    KeyExistsError,
    KeyNotFoundError,
    KeystoreCorruptError,
)


def test_create_unseal_list(make_keystore):
    ks = make_keystore()
    assert ks.list_ids() == []
    assert ks.create("templates") == 1
    ks.create("user:abc", secret=b"s" * 32)
    assert ks.list_ids() == ["templates", "user:abc"]
    assert ks.unseal("user:abc") == b"s" * 32
    assert len(ks.unseal("templates")) == 32
    assert ks.unseal("templates") != ks.unseal("user:abc")


def test_create_twice_refused(make_keystore):
    ks = make_keystore()
    ks.create("k")
    before = ks.unseal("k")
    with pytest.raises(KeyExistsError):
        ks.create("k")
    assert ks.unseal("k") == before


def test_rotate_keeps_old_versions(make_keystore):
    ks = make_keystore()
    ks.create("k", secret=b"1" * 32)
    assert ks.rotate("k", secret=b"2" * 32) == 2
    assert ks.rotate("k") == 3
    assert ks.versions("k") == [1, 2, 3]
    assert ks.current_version("k") == 3
    assert ks.unseal("k", 1) == b"1" * 32
    assert ks.unseal("k", 2) == b"2" * 32
    assert ks.unseal("k") not in (b"1" * 32, b"2" * 32)
    with pytest.raises(KeyNotFoundError):
        ks.unseal("k", 9)


def test_delete_removes_every_version(make_keystore):
    ks = make_keystore()
    ks.create("gone", secret=b"g" * 32)
    ks.rotate("gone")
    ks.create("kept")
    ks.delete("gone")
    assert ks.list_ids() == ["kept"]
    with pytest.raises(KeyNotFoundError):
        ks.unseal("gone")
    with pytest.raises(KeyNotFoundError):
        ks.delete("gone")
    with pytest.raises(KeyNotFoundError):
        ks.rotate("gone")


def test_persistent_across_reopen(make_keystore):
    ks = make_keystore()
    ks.create("k", secret=b"p" * 32)
    ks.close()
    assert make_keystore().unseal("k") == b"p" * 32


def test_ensure_is_idempotent(make_keystore):
    ks = make_keystore()
    first = ks.ensure("templates")
    assert ks.ensure("templates") == first
    assert ks.versions("templates") == [1]


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "x" * 129, "sp ace", "é"])
def test_invalid_ids(make_keystore, bad):
    ks = make_keystore()
    with pytest.raises(InvalidKeyIdError):
        ks.create(bad)


def test_file_mode_and_no_plain_secret(make_keystore):
    ks = make_keystore()
    secret = os.urandom(32)
    ks.create("k", secret=secret)
    mode = stat.S_IMODE(os.stat(ks.path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(ks.directory).st_mode) == 0o700
    for p in ks.directory.rglob("*"):
        if p.is_file():
            assert secret not in p.read_bytes(), p


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupted_store_is_a_typed_error(make_keystore, damage):
    ks = make_keystore()
    ks.create("k")
    raw = bytearray(ks.path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[len(raw) // 2] ^= 0x40
    elif damage == "garbage":
        raw = bytearray(os.urandom(len(raw)))
    else:
        raw = bytearray()
    ks.path.write_bytes(bytes(raw))
    with pytest.raises(KeystoreCorruptError):
        make_keystore().unseal("k")


def test_swapped_blob_is_refused(make_keystore):
    """A blob moved under another id (with a valid checksum) must not unseal as that id."""
    from firmware.keystore import keyfile

    ks = make_keystore()
    ks.create("a", secret=b"a" * 32)
    ks.create("b", secret=b"b" * 32)
    data = keyfile.decode(ks.path.read_bytes())
    data.keys["b"].versions[1] = data.keys["a"].versions[1]
    ks.path.write_bytes(keyfile.encode(data))
    with pytest.raises(KeystoreCorruptError):
        make_keystore().unseal("b")


def _stored_blob(ks, key_id: str, version: int) -> bytes:
    """The sealed blob of one version as it sits in the keystore file (base64 inside the JSON)."""
    import base64

    from firmware.keystore import keyfile

    data = keyfile.decode(ks.path.read_bytes(), ks.path)
    return base64.b64encode(data.keys[key_id].versions[version])


def test_delete_version_destroys_only_that_version(make_keystore):
    ks = make_keystore()
    ks.create("k", secret=b"1" * 32)
    ks.rotate("k", secret=b"2" * 32)
    ks.rotate("k", secret=b"3" * 32)
    ks.create("other", secret=b"o" * 32)
    old_blob = _stored_blob(ks, "k", 1)
    assert old_blob in ks.path.read_bytes()
    ks.delete_version("k", 1)
    assert ks.versions("k") == [2, 3] and ks.current_version("k") == 3
    assert old_blob not in ks.path.read_bytes()  # the sealed blob left the file
    with pytest.raises(KeyNotFoundError):
        ks.unseal("k", 1)
    reopened = make_keystore()  # a fresh instance reads the committed file
    assert reopened.versions("k") == [2, 3]
    assert reopened.unseal("k", 2) == b"2" * 32
    assert reopened.unseal("k") == b"3" * 32
    assert reopened.unseal("other") == b"o" * 32


def test_delete_version_refuses_current_and_unknown(make_keystore):
    from firmware.keystore import CurrentVersionError

    ks = make_keystore()
    ks.create("k", secret=b"1" * 32)
    with pytest.raises(CurrentVersionError):
        ks.delete_version("k", 1)  # the only (current) version: rotate first, or delete the key
    ks.rotate("k", secret=b"2" * 32)
    before = ks.path.read_bytes()
    with pytest.raises(CurrentVersionError):
        ks.delete_version("k", 2)
    with pytest.raises(KeyNotFoundError):
        ks.delete_version("k", 7)
    with pytest.raises(KeyNotFoundError):
        ks.delete_version("nope", 1)
    with pytest.raises(KeyNotFoundError):
        ks.delete_version("k", "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyIdError):
        ks.delete_version("bad id!", 1)
    assert ks.path.read_bytes() == before  # refused calls change nothing
    assert ks.unseal("k", 1) == b"1" * 32


def test_bad_secret_is_a_typed_error_that_does_not_echo_it(make_keystore):
    from firmware.keystore import InvalidSecretError

    ks = make_keystore()
    for bad in (b"short-secret", b"L" * 65):
        with pytest.raises(InvalidSecretError) as exc:
            ks.create("k", secret=bad)
        assert bad.decode() not in str(exc.value) and repr(bad) not in str(exc.value)
    assert ks.list_ids() == []
