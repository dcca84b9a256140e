"""The enrolled-user store: lifecycle, matching candidates, biometric and image keys, typed errors."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from firmware.biokey import InvalidEmbeddingError
from firmware.keystore import KeystoreConfig, WrongPassphraseError, open_keystore
from firmware.templates import (
    InvalidNameError,
    InvalidPolicyError,
    TemplateStore,
    TemplateStoreCorruptError,
    UserNotFoundError,
    UserRevokedError,
    WrongFaceError,
)
from tests.support.embeddings import near, unit


def test_enroll_list_get_rename_revoke(store):
    rng = np.random.default_rng(1)
    alice = store.enroll("Alice", [unit(rng)])
    bob = store.enroll("Bob", [unit(rng), unit(rng)], policy={"schedule": "weekdays"})
    assert [u.name for u in store.list()] == ["Alice", "Bob"] or {u.name for u in store.list()} == {"Alice", "Bob"}
    assert store.get(bob).policy == {"schedule": "weekdays"}
    assert store.get(alice).status == "active"
    store.rename(alice, "Alice Liddell")
    assert store.get(alice).name == "Alice Liddell"
    store.revoke(bob)
    assert store.get(bob).status == "revoked"
    assert [u.user_id for u in store.list(include_revoked=False)] == [alice]
    assert [c.user_id for c in store.candidates()] == [alice]
    store.reactivate(bob)
    assert {c.user_id for c in store.candidates()} == {alice, bob}
    store.set_policy(alice, {"hours": [[8, 18]], "days": "mon-fri"})
    assert store.get(alice).policy == {"hours": [[8, 18]], "days": "mon-fri"}


def test_candidates_decrypt_the_normalised_embeddings(store):
    rng = np.random.default_rng(2)
    embs = [unit(rng) * 3.0, unit(rng) * 0.5]
    uid = store.enroll("Carol", embs)
    (cand,) = store.candidates()
    assert cand.user_id == uid and cand.name == "Carol"
    expected = np.stack([e / np.linalg.norm(e) for e in embs])
    np.testing.assert_allclose(cand.embeddings, expected, rtol=1e-6)


def test_biometric_and_image_keys(store):
    rng = np.random.default_rng(3)
    face = unit(rng)
    uid = store.enroll("Dana", [face, near(rng, face, 0.95)])
    other = store.enroll("Eve", [unit(rng)])
    k1 = store.user_image_key(uid, near(rng, face, 0.85))
    k2 = store.user_image_key(uid, near(rng, face, 0.85))
    assert len(k1) == 32 and k1 == k2  # two different live captures give the same key
    assert store.biometric_key(uid, face) != k1  # the image key is not the biometric key alone
    with pytest.raises(WrongFaceError):
        store.user_image_key(uid, unit(rng))  # a wrong face
    with pytest.raises(WrongFaceError):
        store.user_image_key(other, face)


def test_image_key_needs_the_keystore_secret(store):
    rng = np.random.default_rng(4)
    face = unit(rng)
    uid = store.enroll("Finn", [face])
    store.user_image_key(uid, face)
    store.keystore.delete(f"user:{uid}")
    with pytest.raises(TemplateStoreCorruptError, match="sealed secret"):
        store.user_image_key(uid, face)


def test_revoked_user_gets_no_key_unless_asked(store):
    rng = np.random.default_rng(5)
    face = unit(rng)
    uid = store.enroll("Gus", [face])
    key = store.user_image_key(uid, face)
    store.revoke(uid)
    with pytest.raises(UserRevokedError):
        store.user_image_key(uid, face)
    assert store.user_image_key(uid, face, allow_revoked=True) == key


def test_purge_removes_everything(store):
    rng = np.random.default_rng(6)
    face = unit(rng)
    uid = store.enroll("Hana Purgeme", [face])
    keep = store.enroll("Ivo", [unit(rng)])
    blobs = sqlite3.connect(store.path).execute("SELECT template, helper FROM users WHERE id = ?", (uid,)).fetchone()
    secret = store.keystore.unseal(f"user:{uid}")
    store.purge(uid)
    with pytest.raises(UserNotFoundError):
        store.get(uid)
    with pytest.raises(UserNotFoundError):
        store.user_image_key(uid, face)
    with pytest.raises(UserNotFoundError):
        store.purge(uid)
    assert f"user:{uid}" not in store.keystore.list_ids()
    assert [u.user_id for u in store.list()] == [keep]
    for p in store.data_dir.rglob("*"):
        if p.is_file():
            raw = p.read_bytes()
            for needle in (*blobs, secret, b"Hana Purgeme", uid.encode()):
                assert needle not in raw, (p, needle[:8])


def test_purge_orphans(store):
    store.keystore.create("user:deadbeefdeadbeef")
    rng = np.random.default_rng(7)
    uid = store.enroll("Jo", [unit(rng)])
    assert store.purge_orphans() == ["user:deadbeefdeadbeef"]
    assert f"user:{uid}" in store.keystore.list_ids()


def test_bad_inputs_are_typed_errors(store):
    rng = np.random.default_rng(8)
    with pytest.raises(InvalidNameError):
        store.enroll("", [unit(rng)])
    with pytest.raises(InvalidNameError):
        store.enroll("a\nb", [unit(rng)])
    with pytest.raises(InvalidEmbeddingError):
        store.enroll("Kim", [])
    with pytest.raises(InvalidEmbeddingError):
        store.enroll("Kim", [np.zeros(192)])
    with pytest.raises(InvalidEmbeddingError):
        store.enroll("Kim", [np.full(192, np.nan)])
    uid = store.enroll("Kim", [unit(rng)])
    with pytest.raises(InvalidPolicyError):
        store.set_policy(uid, ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidPolicyError):
        store.set_policy(uid, {"x": float("nan")})
    with pytest.raises(UserNotFoundError):
        store.rename("nope", "X")
    with pytest.raises(InvalidEmbeddingError):
        store.user_image_key(uid, unit(rng, 64))
    assert store.list()[0].name == "Kim"  # nothing lost


def test_corrupted_database_is_a_typed_error(tmp_path, file_config):
    data = tmp_path / "data"
    ks = open_keystore(file_config, data)
    st = TemplateStore(data, ks)
    st.enroll("Lee", [unit(np.random.default_rng(9))])
    st.close()
    raw = bytearray((data / "users.db").read_bytes())
    raw[:16] = b"garbage garbage!"
    (data / "users.db").write_bytes(bytes(raw))
    with pytest.raises(TemplateStoreCorruptError):
        TemplateStore(data, ks)


def test_altered_template_is_a_typed_error(tmp_path, file_config):
    data = tmp_path / "data"
    ks = open_keystore(file_config, data)
    st = TemplateStore(data, ks)
    rng = np.random.default_rng(10)
    face = unit(rng)
    uid = st.enroll("Mo", [face])
    db = sqlite3.connect(st.path)
    blob = bytearray(db.execute("SELECT template FROM users").fetchone()[0])
    blob[20] ^= 1
    db.execute("UPDATE users SET template = ?, helper = template WHERE id = ?", (bytes(blob), uid))
    db.commit()
    db.close()
    with pytest.raises(TemplateStoreCorruptError, match="fails authentication"):
        st.candidates()
    with pytest.raises(TemplateStoreCorruptError):
        st.user_image_key(uid, face)


def test_wrong_passphrase_cannot_open_templates(tmp_path):
    data = tmp_path / "data"
    cfg = KeystoreConfig(scrypt_log2_n=10)
    st = TemplateStore(data, open_keystore(cfg, data, passphrase="right"))
    st.enroll("Ned", [unit(np.random.default_rng(11))])
    with pytest.raises(WrongPassphraseError):
        open_keystore(cfg, data, passphrase="wrong")


def test_data_survives_reopen(tmp_path, file_config):
    data = tmp_path / "data"
    rng = np.random.default_rng(12)
    face = unit(rng)
    st = TemplateStore(data, open_keystore(file_config, data))
    uid = st.enroll("Oli", [face])
    key = st.user_image_key(uid, face)
    st.close()
    st2 = TemplateStore(data, open_keystore(file_config, data))
    assert st2.user_image_key(uid, near(rng, face, 0.9)) == key


def test_reenroll_renews_the_template(store):
    rng = np.random.default_rng(13)
    face = unit(rng)
    uid = store.enroll("Pat", [face])
    old_helper = sqlite3.connect(store.path).execute("SELECT helper FROM users").fetchone()[0]
    old_key = store.user_image_key(uid, face)
    store.reenroll(uid, [face])
    new_helper = sqlite3.connect(store.path).execute("SELECT helper FROM users").fetchone()[0]
    assert new_helper != old_helper
    assert store.user_image_key(uid, face) != old_key  # new randomness: the old key is not reproduced
    with pytest.raises(UserNotFoundError):
        store.reenroll("nobody", [face])
