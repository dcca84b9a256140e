"""Every command's bad inputs: one `facelock: error:` line, a non-zero exit code, and nothing changed.

Exit codes: 1 bad input / refused operation, 3 a face that did not verify, 4 no CA / no device yet.
(Tests run as root, for whom chmod 000 does not make a file unreadable, so "unreadable" is exercised with
a directory and a dangling symlink where a file is expected.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.provisioning.conftest import Cli, assert_one_line_error
from tests.provisioning.test_end_to_end import NAME_A, NAME_B, all_bytes, setup_device


@pytest.fixture(scope="module")
def device(tmp_path_factory, faces):
    """One enrolled device shared by the read-mostly checks below (each check leaves it unchanged)."""
    cli = Cli(tmp_path_factory.mktemp("bad") / "data")
    uid_a, uid_b = setup_device(cli, faces)
    enc = cli.data_dir.parent / "a.flk"
    cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.a_probe, "-o", enc, ok=True)
    return cli, enc


def unchanged(cli: Cli):
    """Context: the data dir (minus the append-only audit log) is byte-identical afterwards."""
    class _Ctx:
        def __enter__(self):
            self.before = {p: d for p, d in all_bytes(cli.data_dir).items() if "audit" not in p.name}

        def __exit__(self, *exc):
            after = {p: d for p, d in all_bytes(cli.data_dir).items() if "audit" not in p.name}
            assert after == self.before
    return _Ctx()


def broken_paths(tmp_path: Path) -> dict[str, Path]:
    link = tmp_path / "dangling.png"
    link.symlink_to(tmp_path / "nowhere.png")
    d = tmp_path / "adir.png"
    d.mkdir()
    return {"missing": tmp_path / "missing.png", "dangling": link, "directory": d}


# ----------------------------------------------------------------------------------- not initialised
@pytest.mark.parametrize("argv", [
    ["enroll", "x", "--images", "."],
    ["users", "list"],
    ["users", "show", "x"],
    ["users", "rename", "x", "y"],
    ["users", "revoke", "x"],
    ["users", "reactivate", "x"],
    ["users", "purge", "x", "--yes"],
    ["policy", "set", "x", "--from", "08:00", "--to", "09:00"],
    ["policy", "show", "x"],
    ["policy", "clear", "x"],
    ["encrypt", "img.png", "--user", "x", "--probe", "p.png", "-o", "out"],
    ["decrypt", "f.flk", "--probe", "p.png", "-o", "out"],
    ["keys", "rotate"],
    ["keys", "list"],
    ["backup", "export", "-o", "b.bak"],
    ["device", "renew"],
    ["device", "show"],
])
def test_commands_before_device_init_exit_4(cli, argv):
    assert_one_line_error(cli(*argv), 4, "device init")


def test_ca_show_before_ca_init(cli):
    assert_one_line_error(cli("ca", "show"), 4, "ca init")


def test_invalid_config_file_is_one_line(cli, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[device]\nrelay_activ_high = true\n")
    r = cli("users", "list", "--config", cfg)
    assert_one_line_error(r, 1, "relay_activ_high")


# ----------------------------------------------------------------------------------------------- enroll
def test_enroll_bad_inputs(device, faces, tmp_path):
    cli, _ = device
    paths = broken_paths(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.png").write_bytes(b"not really a png")
    (texts / "b.jpg").write_bytes(b"")
    cats = tmp_path / "cats"
    cats.mkdir()
    for i in range(3):
        (cats / f"{i}.png").write_bytes(faces.no_face.read_bytes())
    with unchanged(cli):
        assert_one_line_error(cli("enroll", "C", "--images", paths["missing"]), 1, "no such directory")
        assert_one_line_error(cli("enroll", "C", "--images", faces.secret), 1, "not a directory")
        assert_one_line_error(cli("enroll", "C", "--images", empty), 1, "no image files")
        assert_one_line_error(cli("enroll", "C", "--images", texts), 3, "usable face")
        assert_one_line_error(cli("enroll", "C", "--images", cats), 3, "usable face")
        assert_one_line_error(cli("enroll", "C"), 1, "--images DIR or --camera")
        assert_one_line_error(cli("enroll", "C", "--images", faces.a_dir, "--camera"), 1, "exactly one")
        assert_one_line_error(cli("enroll", NAME_A, "--images", faces.b_dir), 1, "already enrolled")
        assert_one_line_error(cli("enroll", "", "--images", faces.b_dir), 1, "name")
        assert_one_line_error(cli("enroll", "bad\nname", "--images", faces.b_dir), 1, "name")
        # the same face under another name is refused without --force
        assert_one_line_error(cli("enroll", "Someone Else", "--images", faces.a_dir), 1,
                              f"already enrolled as '{NAME_A}'")


def test_enroll_force_allows_the_same_face_twice(cli, faces):
    setup_device(cli, faces)
    assert_one_line_error(cli("enroll", "Again", "--images", faces.b_dir), 1, "already enrolled as")
    cli("enroll", "Again", "--images", faces.b_dir, "--force", ok=True)
    names = {u["name"] for u in json.loads(cli("users", "list", "--json", ok=True).stdout)}
    assert names == {NAME_A, NAME_B, "Again"}


# ------------------------------------------------------------------------------------------------ users
def test_users_bad_inputs(device):
    cli, _ = device
    with unchanged(cli):
        for argv in (["users", "show", "nobody"], ["users", "rename", "nobody", "x"],
                     ["users", "revoke", "nobody"], ["users", "purge", "nobody", "--yes"]):
            assert_one_line_error(cli(*argv), 1, "no enrolled user")
        assert_one_line_error(cli("users", "rename", NAME_A, NAME_B), 1, "already exists")
        assert_one_line_error(cli("users", "rename", NAME_A, " "), 1, "name")
        # purge is irreversible: scripts must say --yes (no terminal here to ask on)
        assert_one_line_error(cli("users", "purge", NAME_A), 1, "--yes")


def test_users_show_rename_revoke(cli, faces, tmp_path):
    uid_a, _ = setup_device(cli, faces)
    shown = json.loads(cli("users", "show", uid_a, "--json", ok=True).stdout)
    assert shown["name"] == NAME_A and not shown["revoked"]
    cli("users", "rename", NAME_A, "Eileen", ok=True)
    assert json.loads(cli("users", "show", "Eileen", "--json", ok=True).stdout)["user_id"] == uid_a
    cli("users", "revoke", "Eileen", ok=True)
    assert json.loads(cli("users", "show", uid_a, "--json", ok=True).stdout)["revoked"]
    # a revoked user can no longer encrypt or decrypt, even with the right face
    r = cli("encrypt", faces.secret, "--user", "Eileen", "--probe", faces.a_probe, "-o", tmp_path / "x.flk")
    assert_one_line_error(r, 3, "revoked")
    table = cli("users", "list", ok=True).stdout
    assert "revoked" in table and "Eileen" in table
    cli("users", "reactivate", "Eileen", ok=True)
    cli("encrypt", faces.secret, "--user", "Eileen", "--probe", faces.a_probe, "-o", tmp_path / "x.flk", ok=True)
    assert_one_line_error(cli("users", "reactivate", "nobody"), 1, "no enrolled user")


# ----------------------------------------------------------------------------------------------- policy
def test_policy_bad_inputs(device):
    cli, _ = device
    with unchanged(cli):
        assert_one_line_error(cli("policy", "set", "nobody", "--from", "08:00", "--to", "18:00"), 1, "no enrolled user")
        assert_one_line_error(cli("policy", "set", NAME_A, "--from", "25:00", "--to", "18:00"), 1, "HH:MM")
        assert_one_line_error(cli("policy", "set", NAME_A, "--from", "8am", "--to", "18:00"), 1, "HH:MM")
        assert_one_line_error(cli("policy", "set", NAME_A, "--days", "funday", "--from", "08:00", "--to", "18:00"),
                              1, "funday")
        assert_one_line_error(cli("policy", "show", "nobody"), 1, "no enrolled user")


def test_policy_set_show_clear(cli, faces):
    setup_device(cli, faces)
    cli("policy", "set", NAME_B, "--days", "mon-fri", "--from", "08:00", "--to", "18:00", ok=True)
    cli("policy", "set", NAME_B, "--days", "sat", "--from", "22:00", "--to", "02:00", "--add", ok=True)
    pol = json.loads(cli("policy", "show", NAME_B, "--json", ok=True).stdout)["policy"]
    assert pol["schedule"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"},
        {"days": ["sat"], "start": "22:00", "end": "02:00"},
    ]
    # the stored schedule is what firmware.lock.policy understands
    from firmware.lock.policy import PolicyConfig

    uid_b = json.loads(cli("users", "show", NAME_B, "--json", ok=True).stdout)["user_id"]
    cfg = PolicyConfig.from_dict({"schedule": {uid_b: pol["schedule"]}})
    import datetime as dt

    assert cfg.schedules[uid_b][0].contains(dt.datetime(2026, 11, 23, 9, 0))  # a Monday 09:00
    assert not cfg.schedules[uid_b][0].contains(dt.datetime(2026, 11, 22, 9, 0))  # Sunday
    cli("policy", "clear", NAME_B, ok=True)
    assert "schedule" not in json.loads(cli("policy", "show", NAME_B, "--json", ok=True).stdout)["policy"]


# ------------------------------------------------------------------------------------- encrypt/decrypt
def test_encrypt_bad_inputs(device, faces, tmp_path):
    cli, _ = device
    paths = broken_paths(tmp_path)
    out = tmp_path / "out.flk"
    with unchanged(cli):
        for label, p in paths.items():
            r = cli("encrypt", p, "--user", NAME_A, "--probe", faces.a_probe, "-o", out)
            assert_one_line_error(r, 1, "no such file" if label != "directory" else "directory")
            r = cli("encrypt", faces.secret, "--user", NAME_A, "--probe", p, "-o", out)
            assert_one_line_error(r, 1)
        assert_one_line_error(cli("encrypt", faces.not_image, "--user", NAME_A, "--probe", faces.a_probe, "-o", out),
                              1, "not a decodable image")
        assert_one_line_error(cli("encrypt", faces.secret, "--user", "nobody", "--probe", faces.a_probe, "-o", out),
                              1, "no enrolled user")
        assert_one_line_error(cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.not_image, "-o", out),
                              1, "decode")
        assert_one_line_error(cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.no_face, "-o", out),
                              3, "no usable face")
        assert_one_line_error(cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.a_probe,
                                  "--camera", "0", "-o", out), 1, "not both")
        existing = tmp_path / "exists.flk"
        existing.write_bytes(b"keep me")
        assert_one_line_error(cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.a_probe,
                                  "-o", existing), 1, "already exists")
        assert existing.read_bytes() == b"keep me"
        assert_one_line_error(cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.a_probe,
                                  "-o", faces.secret, "--force"), 1, "overwrite the input")
    assert not out.exists()


def test_decrypt_bad_inputs(device, faces, tmp_path):
    cli, enc = device
    paths = broken_paths(tmp_path)
    out = tmp_path / "out.jpg"
    garbage = tmp_path / "garbage.flk"
    garbage.write_bytes(b"FLKC" + bytes(200))
    tampered = tmp_path / "tampered.flk"
    t = bytearray(enc.read_bytes())
    t[-20] ^= 1
    tampered.write_bytes(bytes(t))
    with unchanged(cli):
        for p in paths.values():
            assert_one_line_error(cli("decrypt", p, "--probe", faces.a_probe, "-o", out), 1)
        assert_one_line_error(cli("decrypt", faces.secret, "--probe", faces.a_probe, "-o", out), 1,
                              "not a FaceLock encrypted file")
        assert_one_line_error(cli("decrypt", garbage, "--probe", faces.a_probe, "-o", out), 1, "not a FaceLock")
        assert_one_line_error(cli("decrypt", tampered, "--probe", faces.a_probe, "-o", out), 1, "cannot be decrypted")
        assert_one_line_error(cli("decrypt", enc, "--probe", faces.b_probe, "-o", out), 3)
        assert_one_line_error(cli("decrypt", enc, "--probe", faces.no_face, "-o", out), 3, "no usable face")
        assert_one_line_error(cli("decrypt", enc, "--probe", faces.not_image, "-o", out), 1)
        existing = tmp_path / "exists.jpg"
        existing.write_bytes(b"keep me")
        assert_one_line_error(cli("decrypt", enc, "--probe", faces.a_probe, "-o", existing), 1, "already exists")
        assert existing.read_bytes() == b"keep me"
    assert not out.exists()


def test_decrypt_on_another_device_is_refused(device, faces, cli, tmp_path):
    """A file sealed on device 1 names an owner unknown to device 2 (no shared keys)."""
    _, enc = device
    setup_device(cli, faces)
    assert_one_line_error(cli("decrypt", enc, "--probe", faces.a_probe, "-o", tmp_path / "o.jpg"), 1,
                          "not enrolled on this device")


# ----------------------------------------------------------------------------------------------- backup
def test_backup_bad_inputs(device, tmp_path):
    cli, _ = device
    paths = broken_paths(tmp_path)
    target = tmp_path / "target"
    garbage = tmp_path / "garbage.bak"
    garbage.write_bytes(b"definitely not a bundle" * 10)
    with unchanged(cli):
        for p in paths.values():
            assert_one_line_error(cli("backup", "import", p, data_dir=target), 1)
        assert_one_line_error(cli("backup", "import", garbage, data_dir=target), 1, "not a FaceLock backup")
        bundle = tmp_path / "b.bak"
        cli("backup", "export", "-o", bundle, ok=True)
        assert_one_line_error(cli("backup", "export", "-o", bundle), 1, "already exists")
        assert_one_line_error(cli("backup", "import", bundle, data_dir=target, env={"FACELOCK_PASSPHRASE": "nope"}),
                              1, "wrong passphrase")
        cli.passphrase = None
        try:
            assert_one_line_error(cli("backup", "export", "-o", tmp_path / "c.bak"), 1, "passphrase")
        finally:
            from tests.provisioning.conftest import PASSPHRASE

            cli.passphrase = PASSPHRASE
        assert_one_line_error(cli("backup", "import", bundle), 1, "already")  # into a populated dir
    assert not (target / "device").exists()


# ------------------------------------------------------------------------------------------------- keys
def test_keys_rotate_keeps_users_and_files(cli, faces, tmp_path):
    setup_device(cli, faces)
    enc = tmp_path / "a.flk"
    cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.a_probe, "-o", enc, ok=True)
    before = json.loads(cli("keys", "list", "--json", ok=True).stdout)
    ks_file = cli.data_dir / "keystore" / "keys.fks"
    raw_before = ks_file.read_bytes() if ks_file.exists() else None
    db_before = (cli.data_dir / "users.db").read_bytes()
    info = json.loads(cli("keys", "rotate", "--json", ok=True).stdout)
    assert info["templates"].startswith("2 template(s) re-encrypted")
    after = json.loads(cli("keys", "list", "--json", ok=True).stdout)
    assert {k["key_id"] for k in after["keys"]} == {k["key_id"] for k in before["keys"]}
    cur = {k["key_id"]: k["current"] for k in after["keys"]}
    assert cur["templates"] == {k["key_id"]: k["current"] for k in before["keys"]}["templates"] + 1
    assert (cli.data_dir / "users.db").read_bytes() != db_before
    if raw_before is not None:
        assert ks_file.read_bytes() != raw_before
    out = tmp_path / "a.jpg"
    cli("decrypt", enc, "--probe", faces.a_probe, "-o", out, ok=True)
    assert out.read_bytes() == faces.secret.read_bytes()
    assert_one_line_error(cli("decrypt", enc, "--probe", faces.b_probe, "-o", tmp_path / "b.jpg"), 3)


def test_data_dir_that_is_a_file(cli, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert_one_line_error(cli("users", "list", data_dir=f), 1, "not a directory")
    assert_one_line_error(cli("ca", "init", data_dir=f), 1, "not a directory")


def test_refusal_seen_by_a_script(device, faces, tmp_path):
    """Through a real process: exit code 3 and exactly one line on the real stderr (fd 2), nothing written."""
    import os
    import subprocess
    import sys

    cli, enc = device
    out = tmp_path / "o.jpg"
    env = dict(os.environ, FACELOCK_DATA_DIR=str(cli.data_dir))
    p = subprocess.run([sys.executable, "-m", "provisioning.cli", "decrypt", str(enc), "--probe", str(faces.b_probe),
                        "-o", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 3, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("facelock: error: "), p.stderr
    assert p.stdout == "" and not out.exists()


def _without_dac_override() -> list[str]:
    """Prefix that runs a command as root *without* the power to read any file (so 0000 means unreadable)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []  # an ordinary user cannot read a 0000 file anyway
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE as root")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", caps, "--inh-caps", caps, "--"]


def test_unreadable_files_through_a_real_process(device, faces, tmp_path):
    """Files that exist but cannot be read (mode 0000): one line, exit 1, nothing written."""
    import os
    import subprocess
    import sys

    cli, enc = device
    prefix = _without_dac_override()
    locked = {}
    for name, src in (("image.jpg", faces.secret), ("probe.jpg", faces.a_probe), ("file.flk", enc),
                      ("pass.txt", None)):
        p = tmp_path / name
        p.write_bytes(src.read_bytes() if src is not None else b"pw\n")
        p.chmod(0)
        locked[name] = p
    out = tmp_path / "out"
    env = dict(os.environ, FACELOCK_DATA_DIR=str(cli.data_dir))
    cases = [
        ["encrypt", locked["image.jpg"], "--user", NAME_A, "--probe", faces.a_probe, "-o", out],
        ["encrypt", faces.secret, "--user", NAME_A, "--probe", locked["probe.jpg"], "-o", out],
        ["decrypt", locked["file.flk"], "--probe", faces.a_probe, "-o", out],
        ["backup", "export", "-o", out, "--passphrase-file", locked["pass.txt"]],
    ]
    for argv in cases:
        p = subprocess.run([*prefix, sys.executable, "-m", "provisioning.cli", *map(str, argv)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 1, (argv, p.stderr)
        assert p.stderr.count("\n") == 1 and "ermission denied" in p.stderr, (argv, p.stderr)
        assert not out.exists()
