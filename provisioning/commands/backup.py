"""`facelock backup export|import`: one passphrase-protected bundle of users, policy and keys.

Export takes a consistent copy of the template store (SQLite online backup),
every version of every keystore secret (unsealed, then sealed again inside the
bundle: scrypt + ChaCha20-Poly1305, see provisioning/backup.py) and the
device's config bundle.  Import writes them into a data dir whose keystore
seals the secrets under its *own* device secret or TPM, so a bundle restored
onto a fresh device gives a working lock there.
"""

from __future__ import annotations

from pathlib import Path

import click

from provisioning.options import (
    PATH,
    data_dir_option,
    emit_json,
    json_option,
    passphrase_option,
    read_passphrase,
)

DEVICE_FILES = ("device.json", "ca.crt", "device.crt", "device.csr", "mgmt_cmd.pub", "device.key")


@click.group("backup")
def command() -> None:
    """Export or import an encrypted backup of users, policy and keys."""


@command.command("export")
@click.option("-o", "--output", "output", required=True, type=PATH, help="Bundle file to write.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@data_dir_option
@passphrase_option
@json_option
def export(output: Path, force: bool, data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Write every user, policy and key of this device into one bundle sealed by the passphrase."""
    from provisioning import auditlog, backup, stores
    from provisioning.datadir import DataDir
    from provisioning.verify import write_output

    dd = DataDir(data_dir)
    bundle = dd.require_device()
    passphrase = read_passphrase(passphrase_file, confirm=True, what="backup passphrase")
    entries: dict[str, bytes] = {}
    for name in DEVICE_FILES:
        p = dd.device / name
        if p.is_file():
            entries[f"device/{name}"] = p.read_bytes()
    ks = stores.open_keystore(dd)
    keys: dict[str, list[int]] = {}
    for key_id in ks.list_ids():
        keys[key_id] = ks.versions(key_id)
        for v in keys[key_id]:
            entries[f"keystore/{key_id}/{v}"] = ks.unseal(key_id, v)
    users = stores.users(dd)
    entries.update(users.export_entries())
    manifest = {
        "device_id": bundle["device_id"],
        "users": [{"user_id": u.user_id, "revoked": u.revoked} for u in users.list()],
        "keys": keys,
    }
    blob = backup.seal(passphrase, manifest, entries)
    write_output(output, blob, force)
    auditlog.record(dd, "backup_exported", users=len(manifest["users"]), keys=len(keys))
    info = {"output": str(output), "users": len(manifest["users"]), "keys": len(keys), "bytes": len(blob)}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"backup of {info['users']} user(s) and {info['keys']} key(s) -> {output}")


@command.command("import")
@click.argument("bundle_file", type=PATH)
@click.option("--force", is_flag=True, help="Replace the users, keys and device bundle already in DATA_DIR.")
@data_dir_option
@passphrase_option
@json_option
def import_(bundle_file: Path, force: bool, data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Restore a bundle into DATA_DIR (a fresh device, or --force to replace what is there)."""
    from firmware import boundedjson
    from provisioning import auditlog, backup, stores
    from provisioning.atomicfile import write_atomic
    from provisioning.commands.device import MQTT_SNIPPET, mqtt_snippet
    from provisioning.datadir import DataDir
    from provisioning.errors import AlreadyExistsError, BackupError
    from provisioning.verify import read_input

    dd = DataDir(data_dir)
    blob = read_input(bundle_file, "backup bundle")
    passphrase = read_passphrase(passphrase_file, what="backup passphrase")
    b = backup.open_(passphrase, blob)  # WrongPassphraseError / BackupError before anything is touched
    keys = b.manifest.get("keys")
    if not isinstance(keys, dict) or "device/device.json" not in b.entries:
        raise BackupError(f"{bundle_file}: the bundle has no device bundle or key list")
    if not force and (dd.has_device() or dd.users_db.exists()):
        raise AlreadyExistsError(f"{dd.root} already holds a device or users (use --force to replace them)")
    ks = stores.open_keystore(dd)
    existing = set(ks.list_ids())
    clash = existing & set(keys)
    if clash and not force:
        raise AlreadyExistsError(f"{dd.root} keystore already has key(s) {sorted(clash)} (use --force)")
    # Keys first (the users are useless without them), then users, then the device bundle last,
    # since its presence marks the data dir as an initialised device.
    for key_id, versions in sorted(keys.items()):
        if key_id in existing:
            ks.delete(key_id)
        for i, v in enumerate(sorted(versions)):
            secret = b.entries.get(f"keystore/{key_id}/{v}")
            if secret is None:
                raise BackupError(f"{bundle_file}: key {key_id} version {v} is missing from the bundle")
            (ks.create if i == 0 else ks.rotate)(key_id, secret)
    users = stores.users(dd)
    users.import_entries(b.entries)
    users.store.purge_orphans()  # with --force: secrets of users the replaced users.db had
    for name in DEVICE_FILES:
        data = b.entries.get(f"device/{name}")
        if data is not None and name != "device.json":
            write_atomic(dd.device / name, data, 0o600 if name.endswith(".key") else 0o644)
    try:
        device = boundedjson.loads(b.entries["device/device.json"])
        snippet = mqtt_snippet(dd, device["device_id"], device["broker"], device.get("key_backend", "file"))
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{bundle_file}: the device bundle in it is malformed ({exc})") from None
    write_atomic(dd.device / MQTT_SNIPPET, snippet.encode(), 0o644)  # paths of *this* data dir
    write_atomic(dd.device_json, b.entries["device/device.json"], 0o644)
    n_users = len(b.manifest.get("users", []))
    auditlog.record(dd, "backup_imported", users=n_users, keys=len(keys), created=b.created)
    info = {"device_id": b.manifest.get("device_id"), "users": n_users, "keys": len(keys), "created": b.created}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"restored {n_users} user(s) and {len(keys)} key(s) of device {info['device_id']} "
                   f"(bundle of {b.created}) into {dd.root}")
