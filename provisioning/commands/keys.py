"""`facelock keys rotate|list`: renew the device's long-term keys without losing a user or a file."""

from __future__ import annotations

import os
from pathlib import Path

import click

from provisioning.options import data_dir_option, emit_json, json_option


@click.group("keys")
def command() -> None:
    """Device keystore: list key ids, rotate keys."""


@command.command("list")
@data_dir_option
@json_option
def list_(data_dir: Path, as_json: bool) -> None:
    """Key ids in the keystore with their versions (never the secrets)."""
    from provisioning import stores
    from provisioning.datadir import DataDir

    dd = DataDir(data_dir)
    dd.require_device()
    ks = stores.open_keystore(dd)
    rows = [{"key_id": k, "versions": ks.versions(k), "current": ks.current_version(k)} for k in ks.list_ids()]
    if as_json:
        emit_json({"backend": ks.backend, "keys": rows})
        return
    click.echo(f"keystore backend: {ks.backend}")
    for r in rows:
        click.echo(f"{r['key_id']}: current v{r['current']} (versions {', '.join(map(str, r['versions']))})")


@command.command("rotate")
@data_dir_option
@json_option
def rotate(data_dir: Path, as_json: bool) -> None:
    """Rotate the template-encryption key, re-seal user secrets, and rotate the keystore's KEK.

    Every user's encrypted template and helper data moves to a new version of
    the `templates` key, every sealed user secret is re-sealed as a new
    version, and then the old versions are destroyed.  Each step is crash-safe:
    killed at any moment, every user still works, and running `keys rotate`
    again finishes the job.  The file keystore is then re-wrapped under a fresh
    KEK salt in one atomic write (a TPM keystore has no KEK on disk).  Users'
    image keys do not change: files encrypted before stay decryptable.  The
    device's TLS key is renewed with `facelock device renew`.
    """
    from provisioning import auditlog, stores
    from provisioning.datadir import DataDir

    dd = DataDir(data_dir)
    dd.require_device()
    users = stores.users(dd)
    try:
        done: dict[str, str] = users.rotate_keys()
    finally:
        users.store.close()
        users.store.keystore.close()
    with stores.open_keystore(dd) as ks:
        if ks.backend == "file":
            cfg = stores.keystore_config()
            # the same passphrase the keystore was opened with (keystore.passphrase_env), kept as is
            ks.rewrap(os.environ.get(cfg.passphrase_env) if cfg.passphrase_env else None)
            done["keystore_kek"] = "rewrapped under a fresh salt"
        else:
            done["keystore_kek"] = f"not applicable ({ks.backend} backend seals with the TPM)"
    auditlog.record(dd, "keys_rotated", **done)
    if as_json:
        emit_json(done)
    else:
        for k, v in done.items():
            click.echo(f"{k}: {v}")


@command.command("init-secret")
@click.option("--owner", default=None, metavar="USER",
              help="Give the device secret to this user (the lock daemon's, e.g. facelock): it runs unprivileged "
              "and cannot create files in /etc.")
@data_dir_option
@json_option
def init_secret(owner: str | None, data_dir: Path, as_json: bool) -> None:
    """Create the file keystore's device secret (0600, outside the data dir) if it does not exist yet.

    Run once at install time, as root: the hardened unit gives the daemon a read-only /etc, so it can
    read /etc/facelock/device.secret but not create it.  Idempotent; on a lock upgraded from the layout
    that kept the secret in DATA_DIR/keystore/ it moves that one out instead of making a new one.  With
    the TPM backend nothing is needed (the TPM seals the keys) and nothing is written.
    """
    import pwd

    from firmware.keystore import keystore_dir
    from firmware.keystore.errors import KeystoreUnlockError
    from firmware.keystore.file_backend import (
        FileKeystore,
        device_secret_path,
        load_or_create_device_secret,
        move_legacy_device_secret,
    )
    from provisioning import stores
    from provisioning.errors import ProvisioningError

    cfg = stores.keystore_config()
    if cfg.backend != "file":
        info = {"backend": cfg.backend, "device_secret": None, "created": False}
        if as_json:
            emit_json(info)
        else:
            click.echo(f"keystore backend {cfg.backend}: the TPM seals the keys, no device secret to create")
        return
    path = device_secret_path(cfg.device_secret_path)
    existed = path.exists()
    legacy = keystore_dir(data_dir) / "device.secret"  # where secrets lived before they left the data dir
    try:
        if not existed and legacy != path and (keystore_dir(data_dir) / FileKeystore.file_name).exists():
            existed = move_legacy_device_secret(legacy, path)  # an upgraded lock keeps its keys
        load_or_create_device_secret(path, create=True)
    except KeystoreUnlockError as exc:
        raise ProvisioningError(str(exc)) from None
    if owner is not None:
        try:
            pw = pwd.getpwnam(owner)
        except KeyError:
            raise ProvisioningError(f"no user {owner!r} on this system") from None
        os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, 0o600)
    info = {"backend": "file", "device_secret": str(path), "created": not existed, "owner": owner}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"device secret {path} {'created' if not existed else 'already there'} (0600"
                   f"{', owner ' + owner if owner else ''})")
