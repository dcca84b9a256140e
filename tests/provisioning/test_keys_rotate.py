"""`facelock keys rotate`: afterwards no old key material is left in the data dir, and every user still
verifies and decrypts the files encrypted before the rotation (image keys are deliberately unchanged)."""

from __future__ import annotations

import base64
import json

from tests.provisioning.conftest import assert_one_line_error
from tests.provisioning.test_end_to_end import NAME_A, NAME_B, all_bytes, chunks, setup_device


def _keystore_material(cli) -> dict[str, bytes]:
    """Every sealed blob of every key version, the KEK salt and check value, and the plain templates keys."""
    from firmware.keystore import keyfile
    from provisioning import stores
    from provisioning.datadir import DataDir

    with stores.open_keystore(DataDir(cli.data_dir)) as ks:
        data = keyfile.decode(ks.path.read_bytes(), ks.path)
        out = {f"sealed {kid} v{v}": base64.b64encode(blob)
               for kid, rec in data.keys.items() for v, blob in rec.versions.items()}
        for field in ("salt", "check"):
            if field in data.params:
                out[f"KEK {field}"] = data.params[field].encode()
        for v in ks.versions("templates"):
            out[f"templates key v{v} (plain)"] = ks.unseal("templates", v)
    return out


def _user_material(cli, user_id: str) -> dict[str, bytes]:
    from provisioning import stores
    from provisioning.datadir import DataDir

    users = stores.users(DataDir(cli.data_dir))
    try:
        return {f"{user_id} {k}": v for k, v in users.stored_bytes_of(user_id).items()}
    finally:
        users.store.close()
        users.store.keystore.close()


def test_rotate_destroys_old_key_material_and_keeps_every_user(cli, faces, tmp_path):
    uid_a, uid_b = setup_device(cli, faces)
    original = faces.secret.read_bytes()
    sealed = {}
    for name, probe in ((NAME_A, faces.a_probe), (NAME_B, faces.b_probe)):
        sealed[name] = tmp_path / f"{name[0]}.flk"
        cli("encrypt", faces.secret, "--user", name, "--probe", probe, "-o", sealed[name], ok=True)

    old = {**_keystore_material(cli), **_user_material(cli, uid_a), **_user_material(cli, uid_b)}
    before = all_bytes(cli.data_dir)
    not_seen = [k for k, v in old.items() if "plain" not in k and not any(c in d for c in chunks(v) for d in before.values())]
    assert not not_seen, not_seen  # the scan finds what it looks for

    info = json.loads(cli("keys", "rotate", "--json", ok=True).stdout)
    assert info["templates"] == "2 template(s) re-encrypted under key version 2"
    assert info["destroyed"] == "3 old key version(s) destroyed"  # templates v1 + two user secrets v1

    listed = json.loads(cli("keys", "list", "--json", ok=True).stdout)["keys"]
    assert all(len(k["versions"]) == 1 for k in listed), listed
    after = all_bytes(cli.data_dir)
    left = sorted({(label, str(p.relative_to(cli.data_dir))) for label, v in old.items() for p, d in after.items()
                   if any(c in d for c in chunks(v))})
    assert not left, left

    # every user still verifies and opens what was encrypted before the rotation, bit-exact ...
    for name, probe in ((NAME_A, faces.a_probe), (NAME_B, faces.b_probe)):
        out = tmp_path / f"{name[0]}.jpg"
        cli("decrypt", sealed[name], "--probe", probe, "-o", out, ok=True)
        assert out.read_bytes() == original
    # ... and nobody else's face does
    assert_one_line_error(cli("decrypt", sealed[NAME_A], "--probe", faces.b_probe, "-o", tmp_path / "x.jpg"), 3)
    # a second rotation works as well
    info2 = json.loads(cli("keys", "rotate", "--json", ok=True).stdout)
    assert info2["templates"] == "2 template(s) re-encrypted under key version 3"
    cli("decrypt", sealed[NAME_B], "--probe", faces.b_probe, "-o", tmp_path / "b2.jpg", ok=True)
    assert (tmp_path / "b2.jpg").read_bytes() == original
