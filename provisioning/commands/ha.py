"""`facelock ha grant`: a scoped key and grant for the Home Assistant bridge on the monitor.

The bridge must sign LOCK/UNLOCK unattended, so it gets its own Ed25519 key and a grant, signed here with
the management (command-signing) key, naming what that key may sign: lock, and unlock where given, of the
listed devices, until an expiry.  Devices check the grant with the management public key they already hold.
The management key is unlocked with the CA passphrase for the signature and never written anywhere else.
"""

from __future__ import annotations

import json
import time
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


@click.group("ha")
def command() -> None:
    """Home Assistant bridge: scoped signing key and grant."""


@command.command("grant")
@click.option("--lock", "lock_devices", multiple=True, help="Device HA may LOCK (repeat).")
@click.option("--unlock", "unlock_devices", multiple=True, help="Device HA may LOCK and UNLOCK (repeat).")
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True, help="Grant validity.")
@click.option("--out", "out_dir", type=PATH, required=True,
              help="Directory for ha.key (the bridge's key, 0600) and ha-grant.json (for the monitor).")
@click.option("--force", is_flag=True, help="Replace an existing ha.key / ha-grant.json.")
@click.option("--ca-dir", type=PATH, default=None,
              help="CA directory [default: $FACELOCK_CA_DIR, else ~/.local/share/facelock-ca].")
@data_dir_option
@passphrase_option
@json_option
def grant(lock_devices: tuple[str, ...], unlock_devices: tuple[str, ...], days: int, out_dir: Path, force: bool,
          ca_dir: Path | None, data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Sign a grant for a fresh bridge key with the command-signing key in CA_DIR.

    Then on the monitor: `ha_key_file`, `ha_grant_file`, and `ha_unlock_allowed` listing the --unlock devices.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from provisioning import pki, pkifiles
    from provisioning.atomicfile import write_atomic
    from provisioning.commands.device import _check_device_id
    from provisioning.datadir import DataDir
    from provisioning.errors import AlreadyExistsError, ProvisioningError
    from provisioning.grants import make_grant

    devices: dict[str, list[str]] = {}
    for d in lock_devices:
        devices.setdefault(_check_device_id(d), []).append("lock")
    for d in unlock_devices:
        devices.setdefault(_check_device_id(d), []).extend(["lock", "unlock"])
    if not devices:
        raise ProvisioningError("name at least one device (--lock or --unlock)")
    key_path, grant_path = Path(out_dir) / "ha.key", Path(out_dir) / "ha-grant.json"
    if (key_path.exists() or grant_path.exists()) and not force:
        raise AlreadyExistsError(f"{key_path} or {grant_path} already exists (use --force)")
    dd = DataDir(pkifiles.ca_dir_for(ca_dir, data_dir))
    dd.require_ca()
    passphrase = read_passphrase(passphrase_file, what="CA passphrase")
    mgmt = pkifiles.load_key(dd.cmd_key, passphrase)
    if not isinstance(mgmt, Ed25519PrivateKey):
        raise ProvisioningError(f"{dd.cmd_key} is not an Ed25519 command-signing key")
    bridge = pki.create_signing_key()
    not_after = time.time() + days * 86400
    doc = make_grant(mgmt, bridge.public_key(), devices, not_after)
    del mgmt
    pki.write_key(key_path, bridge)  # the scoped key: 0600, written atomically
    write_atomic(grant_path, json.dumps(doc, indent=1).encode(), 0o644)
    info = {"ha_key_file": str(key_path), "ha_grant_file": str(grant_path), "grant_id": doc["body"]["id"],
            "devices": doc["body"]["devices"], "not_after": not_after,
            "ha_unlock_allowed": sorted(set(unlock_devices))}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"grant {info['grant_id']} for {len(devices)} device(s) until "
                   f"{time.strftime('%Y-%m-%d', time.gmtime(not_after))}: {key_path}, {grant_path}")
