"""Trust boundary: a copy of the lock's data dir (issue 11, item 3).

The attacker copies the data dir to a second "machine" and plays the issue's attack: open the
keystore found there, decrypt the user's stored template, use it as the probe (it regenerates the
biometric key), derive the image key and open the user's `.flk` bit-exact.  Before the fix the
default file keystore kept `device.secret` inside the data dir, so the copy decrypted everything.

- file keystore: the device secret now lives outside the data dir (/etc/facelock/device.secret by
  default; here each machine's $FACELOCK_DEVICE_SECRET), so the copy cannot unwrap a single key;
- TPM keystore: two real swtpm instances; the copy on the second TPM raises TpmBindingError, and
  even with the recorded binding stripped the blobs do not load on the other TPM;
- rooted lock (the original machine, everything present): `facelock encrypt --pin` files resist
  the same attack until the PIN is given.

Each attack is also run on the original machine as a positive control: it succeeds there, so the
refusals above come from the protection, not from a broken attack.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.provisioning.conftest import Cli, assert_one_line_error, faces  # noqa: F401 - faces is a fixture

NAME = "Alice"
PIN = "correct-pin-4812"


def template_probe_attack(data_dir: Path, keystore_config, token: bytes) -> bytes:
    """The issue's attack: the stored template as the probe -> image key -> plaintext."""
    from firmware.crypto import container
    from firmware.keystore import open_keystore
    from firmware.templates import TemplateStore

    header = container.read_header(token)
    uid = header.metadata["facelock"]["user_id"]
    with TemplateStore(data_dir, open_keystore(keystore_config, data_dir)) as store:
        cand = next(c for c in store.candidates() if c.user_id == uid)
        probe = np.asarray(cand.embeddings, dtype=np.float32).mean(axis=0)
        probe /= np.linalg.norm(probe)
        key = store.user_image_key(uid, probe)
    opened = container.open_(key, token)
    assert opened.data is not None
    return opened.data


def machine_env(root: Path) -> dict[str, str]:
    return {"FACELOCK_DEVICE_SECRET": str(root / "etc" / "facelock" / "device.secret")}


def enroll_and_encrypt(cli: Cli, faces, env: dict[str, str], tmp_path: Path, *extra: str) -> Path:  # noqa: F811
    cli("ca", "init", *extra, env=env, ok=True)
    cli("device", "init", "--id", "door-1", *extra, env=env, ok=True)
    cli("enroll", NAME, "--images", faces.a_dir, *extra, env=env, ok=True)
    enc = tmp_path / "photo.flk"
    cli("encrypt", faces.secret, "--user", NAME, "--probe", faces.a_probe, "-o", enc, *extra, env=env, ok=True)
    return enc


def test_copied_data_dir_cannot_decrypt_with_the_file_keystore(tmp_path, faces, monkeypatch):  # noqa: F811
    from firmware.keystore import KeystoreConfig, KeystoreUnlockError, WrongPassphraseError

    m1, m2 = tmp_path / "machine1", tmp_path / "machine2"
    cli = Cli(m1 / "var" / "lib" / "facelock")
    enc = enroll_and_encrypt(cli, faces, machine_env(m1), tmp_path)

    # positive control: on machine 1 (device secret present) the template-as-probe attack works
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", machine_env(m1)["FACELOCK_DEVICE_SECRET"])
    assert template_probe_attack(cli.data_dir, KeystoreConfig(), enc.read_bytes()) == faces.secret.read_bytes()

    # the thief's copy of the data dir, on machine 2
    stolen = m2 / "var" / "lib" / "facelock"
    shutil.copytree(cli.data_dir, stolen)
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", machine_env(m2)["FACELOCK_DEVICE_SECRET"])
    with pytest.raises(KeystoreUnlockError, match="device secret .* is missing"):
        template_probe_attack(stolen, KeystoreConfig(), enc.read_bytes())
    secret_m1 = Path(machine_env(m1)["FACELOCK_DEVICE_SECRET"]).read_bytes()
    for p in stolen.rglob("*"):  # the device secret is nowhere in the copy, under any name
        if p.is_file():
            assert secret_m1 not in p.read_bytes(), f"{p} holds the device secret"
    # ... nor does a device secret of the thief's own open it
    own = Path(machine_env(m2)["FACELOCK_DEVICE_SECRET"])
    own.parent.mkdir(parents=True)
    own.write_bytes(os.urandom(32))
    with pytest.raises(WrongPassphraseError):
        template_probe_attack(stolen, KeystoreConfig(), enc.read_bytes())
    # and the CLI on machine 2 refuses with one line, writing nothing
    out = tmp_path / "stolen.jpg"
    r = cli("decrypt", enc, "--probe", faces.a_probe, "-o", out, data_dir=stolen, env=machine_env(m2))
    assert_one_line_error(r, 1)
    assert not out.exists()


@pytest.fixture
def two_tpms(tmp_path):
    from tests.support.swtpm import Swtpm

    tpms = [Swtpm(tmp_path / f"swtpm-{i}") for i in (1, 2)]
    for t in tpms:
        t.start()
    try:
        yield tpms
    finally:
        for t in tpms:
            t.stop()


def tpm_config(tmp_path: Path, name: str, tcti: str) -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f'[keystore]\nbackend = "tpm"\ntpm_tcti = "{tcti}"\n')
    return cfg


def test_copied_data_dir_cannot_decrypt_on_another_tpm(tmp_path, faces, two_tpms):  # noqa: F811
    from firmware.keystore import KeystoreConfig, KeystoreCorruptError, TpmBindingError, keyfile

    tpm1, tpm2 = two_tpms
    cfg1 = tpm_config(tmp_path, "machine1", tpm1.tcti)
    cli = Cli(tmp_path / "machine1" / "data")
    enc = enroll_and_encrypt(cli, faces, {"FACELOCK_CONFIG": str(cfg1)}, tmp_path)
    assert (cli.data_dir / "keystore" / "tpm-keys.fks").is_file()
    assert not (cli.data_dir / "keystore" / "keys.fks").exists()  # nothing sealed by a file KEK

    ks1 = KeystoreConfig(backend="tpm", tpm_tcti=tpm1.tcti)
    ks2 = KeystoreConfig(backend="tpm", tpm_tcti=tpm2.tcti)
    # positive control: root on machine 1 (its own TPM) runs the attack successfully
    assert template_probe_attack(cli.data_dir, ks1, enc.read_bytes()) == faces.secret.read_bytes()

    stolen = tmp_path / "machine2" / "data"
    shutil.copytree(cli.data_dir, stolen)
    with pytest.raises(TpmBindingError, match="another TPM"):
        template_probe_attack(stolen, ks2, enc.read_bytes())
    # strip the recorded binding (the checksum is no MAC): the TPM itself still refuses the blobs
    path = stolen / "keystore" / "tpm-keys.fks"
    doc = keyfile.decode(path.read_bytes())
    doc.params.pop("primary_name")
    path.write_bytes(keyfile.encode(doc))
    with pytest.raises(KeystoreCorruptError, match="does not belong to this TPM"):
        template_probe_attack(stolen, ks2, enc.read_bytes())
    # the CLI on machine 2: one line, nothing written
    out = tmp_path / "stolen.jpg"
    shutil.rmtree(stolen)
    shutil.copytree(cli.data_dir, stolen)
    r = cli("decrypt", enc, "--probe", faces.a_probe, "-o", out, data_dir=stolen,
            env={"FACELOCK_CONFIG": str(tpm_config(tmp_path, "machine2", tpm2.tcti))})
    assert_one_line_error(r, 1, "another TPM")
    assert not out.exists()


def test_pin_protects_an_image_from_the_rooted_lock(tmp_path, faces, monkeypatch):  # noqa: F811
    """On machine 1 itself (keystore, template and file all present) a --pin file resists the attack."""
    from firmware.crypto.errors import WrongKeyError
    from firmware.keystore import KeystoreConfig

    m1 = tmp_path / "machine1"
    env = machine_env(m1)
    cli = Cli(m1 / "data")
    enc = enroll_and_encrypt(cli, faces, env, tmp_path)  # also enrolls Alice; enc has no PIN
    pinned = tmp_path / "pinned.flk"
    cli("encrypt", faces.secret, "--user", NAME, "--probe", faces.a_probe, "--pin", "-o", pinned,
        env={**env, "FACELOCK_PIN": PIN}, ok=True)
    assert PIN.encode() not in pinned.read_bytes()
    for p in cli.data_dir.rglob("*"):
        if p.is_file():
            assert PIN.encode() not in p.read_bytes(), p
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", env["FACELOCK_DEVICE_SECRET"])
    # the rooted lock's attack opens the PIN-less file ...
    assert template_probe_attack(cli.data_dir, KeystoreConfig(), enc.read_bytes()) == faces.secret.read_bytes()
    # ... but not the PIN-protected one
    with pytest.raises(WrongKeyError):
        template_probe_attack(cli.data_dir, KeystoreConfig(), pinned.read_bytes())
    out = tmp_path / "out.jpg"
    # no PIN given (no terminal): one line, exit 1; a wrong PIN: exit 3 (a check that ran and failed)
    assert_one_line_error(cli("decrypt", pinned, "--probe", faces.a_probe, "-o", out, env=env), 1, "PIN")
    r = cli("decrypt", pinned, "--probe", faces.a_probe, "-o", out, env={**env, "FACELOCK_PIN": "wrong-pin-0000"})
    assert_one_line_error(r, 3, "wrong PIN")
    assert not out.exists()
    # the right PIN and the owner's face: bit-exact; another face with the right PIN: refused
    cli("decrypt", pinned, "--probe", faces.a_probe, "-o", out, env={**env, "FACELOCK_PIN": PIN}, ok=True)
    assert out.read_bytes() == faces.secret.read_bytes()
    r = cli("decrypt", pinned, "--probe", faces.b_probe, "-o", tmp_path / "b.jpg", env={**env, "FACELOCK_PIN": PIN})
    assert_one_line_error(r, 3)
    # a too-short PIN is refused before the face is asked
    r = cli("encrypt", faces.secret, "--user", NAME, "--probe", faces.a_probe, "--pin", "-o", tmp_path / "s.flk",
            env={**env, "FACELOCK_PIN": "12345"})
    assert_one_line_error(r, 1, "PIN must be")


def test_keys_init_secret_creates_the_device_secret_for_an_unprivileged_daemon(tmp_path, monkeypatch):
    """Install step: root creates /etc/facelock/device.secret (here: a temp path) for the daemon's user."""
    import json
    import pwd
    import stat

    path = tmp_path / "etc" / "facelock" / "device.secret"
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", str(path))
    cli = Cli(tmp_path / "data")
    owner = "nobody" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name  # chown needs root
    r = cli("keys", "init-secret", "--owner", owner, "--json", ok=True)
    info = json.loads(r.stdout)
    assert info["created"] and info["device_secret"] == str(path)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == pwd.getpwnam(owner).pw_uid
    first = path.read_bytes()
    assert len(first) == 32
    assert json.loads(cli("keys", "init-secret", "--json", ok=True).stdout)["created"] is False
    assert path.read_bytes() == first  # idempotent: never replaced
    assert not (tmp_path / "data").exists()  # nothing in the data dir
    assert_one_line_error(cli("keys", "init-secret", "--owner", "no-such-user-xyz"), 1, "no user")


def test_keys_init_secret_moves_an_upgraded_locks_secret_out_of_the_data_dir(tmp_path, monkeypatch):
    from firmware.keystore import KeystoreConfig, open_keystore

    data = tmp_path / "data"
    legacy = data / "keystore" / "device.secret"
    open_keystore(KeystoreConfig(scrypt_log2_n=10, device_secret_path=str(legacy)), data).create("k", secret=b"u" * 32)
    saved = legacy.read_bytes()
    path = tmp_path / "etc" / "facelock" / "device.secret"
    monkeypatch.setenv("FACELOCK_DEVICE_SECRET", str(path))
    Cli(data)("keys", "init-secret", ok=True)
    assert path.read_bytes() == saved and not legacy.exists()
    assert open_keystore(KeystoreConfig(scrypt_log2_n=10), data).unseal("k") == b"u" * 32
