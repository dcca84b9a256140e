"""TemplateStore.rotate_keys: old key versions destroyed, every user still verifies, image keys unchanged."""

from __future__ import annotations

import base64
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from firmware.keystore import KeyNotFoundError, keyfile, open_keystore
from firmware.templates import TemplateStore
from firmware.templates.store import TEMPLATES_KEY_ID
from tests.support.embeddings import near, unit


def _files_bytes(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}


def _found(data_dir: Path, needle: bytes) -> list[str]:
    return [name for name, raw in _files_bytes(data_dir).items() if needle in raw]


def _old_material(st: TemplateStore, user_ids: list[str]) -> dict[str, bytes]:
    """Every at-rest byte string that the rotation must destroy, as it sits on disk now."""
    ks = st.keystore
    data = keyfile.decode(ks.path.read_bytes(), ks.path)
    out: dict[str, bytes] = {}
    for kid in [TEMPLATES_KEY_ID] + [f"user:{u}" for u in user_ids]:
        for v, blob in data.keys[kid].versions.items():
            out[f"sealed {kid} v{v}"] = base64.b64encode(blob)
    for uid in user_ids:
        row = st._row(uid)
        out[f"template ciphertext {uid}"] = bytes(row[7])
        out[f"helper ciphertext {uid}"] = bytes(row[8])
    # the unwrapped templates key never reaches the disk; scanned for anyway
    out["templates key v1 (plain)"] = ks.unseal(TEMPLATES_KEY_ID, ks.current_version(TEMPLATES_KEY_ID))
    return out


def _enroll_two(st: TemplateStore, seed: int = 0):
    rng = np.random.default_rng(seed)
    faces = {name: unit(rng) for name in ("ada", "bob")}
    ids = {name: st.enroll(name, [near(rng, x, 0.95) for _ in range(3)]) for name, x in faces.items()}
    probes = {name: near(rng, x, 0.9) for name, x in faces.items()}
    return ids, probes


def test_rotate_destroys_old_versions_and_keeps_users(store: TemplateStore):
    data_dir = store.data_dir
    ids, probes = _enroll_two(store)
    uids = list(ids.values())
    image_keys = {n: store.user_image_key(ids[n], probes[n]) for n in ids}
    embeddings = {c.user_id: c.embeddings for c in store.candidates()}
    old = _old_material(store, uids)
    missing = [what for what, needle in old.items() if "plain" not in what and not _found(data_dir, needle)]
    assert not missing, missing  # the scan can see what it looks for

    res = store.rotate_keys()

    assert res.templates_version == 2 and res.templates_reencrypted == 2 and res.user_secrets_resealed == 2
    assert sorted(res.destroyed) == sorted([(TEMPLATES_KEY_ID, 1)] + [(f"user:{u}", 1) for u in uids])
    ks = store.keystore
    assert ks.versions(TEMPLATES_KEY_ID) == [2]
    for u in uids:
        assert ks.versions(f"user:{u}") == [2]
        with pytest.raises(KeyNotFoundError):
            ks.unseal(f"user:{u}", 1)
    with pytest.raises(KeyNotFoundError):
        ks.unseal(TEMPLATES_KEY_ID, 1)
    leftovers = {what: _found(data_dir, needle) for what, needle in old.items()}
    assert not any(leftovers.values()), leftovers
    # every user still matches, regenerates their key, and gets the same image key (old images decrypt)
    for c in store.candidates():
        np.testing.assert_array_equal(c.embeddings, embeddings[c.user_id])
    for n in ids:
        assert store.user_image_key(ids[n], probes[n]) == image_keys[n]
    # a new store (as after a restart) sees the same, and can rotate again
    store.close()
    reopened = TemplateStore(data_dir, store.keystore)
    try:
        for n in ids:
            assert reopened.user_image_key(ids[n], probes[n]) == image_keys[n]
        assert reopened.rotate_keys().templates_version == 3  # rotates again
        assert reopened.keystore.versions(TEMPLATES_KEY_ID) == [3]
        for n in ids:
            assert reopened.user_image_key(ids[n], probes[n]) == image_keys[n]
    finally:
        reopened.close()


def test_rotate_with_no_users_and_after_an_interrupted_rotation(store: TemplateStore, monkeypatch):
    res = store.rotate_keys()
    assert res.templates_reencrypted == 0 and store.keystore.versions(TEMPLATES_KEY_ID) == [2]
    ids, probes = _enroll_two(store, seed=1)
    key = store.user_image_key(ids["ada"], probes["ada"])
    # a rotation that stops before destroying the old versions (e.g. killed) ...
    monkeypatch.setattr(TemplateStore, "prune_key_versions", lambda self: [])
    store.rotate_keys()
    monkeypatch.undo()
    assert store.keystore.versions(TEMPLATES_KEY_ID) == [2, 3]
    assert store.keystore.versions(f"user:{ids['ada']}") == [1, 2]
    assert store.user_image_key(ids["ada"], probes["ada"]) == key
    # ... is finished by the next one: nothing old survives
    store.rotate_keys()
    assert store.keystore.versions(TEMPLATES_KEY_ID) == [4]
    assert store.keystore.versions(f"user:{ids['ada']}") == [3]
    assert store.user_image_key(ids["ada"], probes["ada"]) == key


def test_prune_keeps_versions_rows_still_use(store: TemplateStore):
    ids, probes = _enroll_two(store, seed=2)
    store.keystore.rotate(TEMPLATES_KEY_ID)  # a new version no row is sealed under yet
    assert store.prune_key_versions() == []  # v1 is still needed by both rows
    assert store.keystore.versions(TEMPLATES_KEY_ID) == [1, 2]
    assert {c.user_id for c in store.candidates()} == set(ids.values())


# ---- SIGKILL at any moment of a rotation ---------------------------------------------------------
ROUNDS = 120


def _rotator(data_dir: Path, cfg, wfd: int) -> None:
    ks = open_keystore(cfg, data_dir)
    st = TemplateStore(data_dir, ks)
    out = os.fdopen(wfd, "w", buffering=1)
    out.write("R\n")
    while True:
        v = st.rotate_keys().templates_version
        out.write(f"V {v}\n")


@pytest.mark.slow
def test_sigkill_during_rotation_never_loses_a_user(tmp_path: Path, file_config):
    data_dir = tmp_path / "data"
    ks = open_keystore(file_config, data_dir)
    st = TemplateStore(data_dir, ks)
    ids, probes = _enroll_two(st, seed=3)
    rng = np.random.default_rng(4)
    carol = unit(rng)
    ids["carol"] = st.enroll("carol", [near(rng, carol, 0.95) for _ in range(3)])
    probes["carol"] = near(rng, carol, 0.9)
    image_keys = {n: st.user_image_key(ids[n], probes[n]) for n in ids}
    embeddings = {c.user_id: c.embeddings for c in st.candidates()}
    st.close()
    ks.close()

    # one rotation's duration sets the kill window, so kills land in every step
    t0 = time.perf_counter()
    with TemplateStore(data_dir, open_keystore(file_config, data_dir)) as probe_st:
        probe_st.rotate_keys()
    window = max(0.002, 2.0 * (time.perf_counter() - t0))

    rnd = random.Random(99)
    completed = interrupted = 0
    for rnd_no in range(ROUNDS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _rotator(data_dir, file_config, w)
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            assert f.readline() == "R\n"
            time.sleep(rnd.uniform(0.0, window))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            completed += sum(1 for line in f.read().splitlines() if line.startswith("V "))
        with TemplateStore(data_dir, open_keystore(file_config, data_dir)) as check:
            assert {c.user_id: c.embeddings.tobytes() for c in check.candidates()} == {
                k: v.tobytes() for k, v in embeddings.items()
            }, rnd_no
            for n in ids:
                assert check.user_image_key(ids[n], probes[n]) == image_keys[n], (rnd_no, n)
            # old versions stay bounded: besides the current one and the one the rows use, at most the
            # two a killed rotation had not yet destroyed (the next rotation destroys them)
            ksv = check.keystore
            used = {int(r[0]) for r in check._query("SELECT DISTINCT templates_key_version FROM users")}
            stale = set(ksv.versions(TEMPLATES_KEY_ID)) - used - {ksv.current_version(TEMPLATES_KEY_ID)}
            assert len(used) == 1 and len(stale) <= 2, (rnd_no, ksv.versions(TEMPLATES_KEY_ID), used)
            if len(ksv.versions(TEMPLATES_KEY_ID)) > 1 or any(len(ksv.versions(f"user:{u}")) > 1 for u in ids.values()):
                interrupted += 1
    assert completed > 0  # some rotations ran to the end between kills ...
    assert interrupted > ROUNDS // 10  # ... and many kills landed inside one
    with TemplateStore(data_dir, open_keystore(file_config, data_dir)) as final:
        final.rotate_keys()  # a clean rotation finishes whatever a kill interrupted
        assert len(final.keystore.versions(TEMPLATES_KEY_ID)) == 1
        for n in ids:
            assert final.keystore.versions(f"user:{ids[n]}") == [final.keystore.current_version(f"user:{ids[n]}")]
            assert final.user_image_key(ids[n], probes[n]) == image_keys[n]
