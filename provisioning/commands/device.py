"""`facelock device init|renew|show`: onboard a lock and keep its client certificate fresh.

`device init` makes the device's TLS key (TPM-sealed in the keystore where
the keystore is TPM-backed, else a 0600 file), a CSR, has the management CA
sign it, and writes the device's config bundle into DATA_DIR/device: its
certificate, the CA certificate (trust anchor for the broker), the broker
address, the management command-signing public key, and a ready `[mqtt]`
config section (mqtt.toml).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from provisioning.options import (
    PATH,
    data_dir_option,
    emit_json,
    json_option,
    passphrase_option,
    read_passphrase,
)

if TYPE_CHECKING:
    from provisioning.datadir import DataDir

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _check_device_id(device_id: str) -> str:
    from provisioning.errors import ProvisioningError

    # The id becomes an MQTT topic level and the certificate CN (= MQTT username via
    # use_identity_as_username), so '+', '#', '/' and spaces must never get in.
    if not DEVICE_ID_RE.match(device_id):
        raise ProvisioningError(
            f"invalid device id {device_id!r}: use 1-64 letters, digits, '-' or '_' (it becomes an MQTT topic level)"
        )
    return device_id


def _check_broker(broker: str) -> str:
    from provisioning.errors import ProvisioningError

    host, sep, port = broker.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProvisioningError(f"invalid broker address {broker!r}: expected HOST:PORT, e.g. mqtt.example.org:8883")
    return broker


def _issue(dd: DataDir, ca_dir: Path, passphrase: bytes, device_id: str, days: int):
    """New device key + CSR, signed by the CA in ca_dir. Returns (key, csr, cert, ca_cert)."""
    from provisioning import pkifiles as pki
    from provisioning.datadir import DataDir

    ca = DataDir(ca_dir)
    ca.require_ca()
    ca_key = pki.load_key(ca.ca_key, passphrase)  # PassphraseError on a wrong passphrase
    ca_cert = pki.load_cert(ca.ca_cert)
    key = pki.new_tls_key()
    csr = pki.make_csr(key, device_id)
    cert = pki.sign_csr(ca_key, ca_cert, csr, days=days)
    pki.verify_issued_by(cert, ca_cert)
    pki.save_cert(ca.issued(device_id), cert)
    return key, csr, cert, ca_cert, ca


MQTT_SNIPPET = "mqtt.toml"


def mqtt_snippet(dd: DataDir, device_id: str, broker: str, key_backend: str) -> str:
    """The `[mqtt]` table for the device's config file (firmware.telemetry.config.MqttConfig keys)."""
    host, _, port = broker.rpartition(":")
    lines = [
        "# [mqtt] section written by `facelock device init`: paste into the device's facelock.toml",
        "[mqtt]",
        f"device_id = {json.dumps(device_id)}",
        f"host = {json.dumps(host)}",
        f"port = {int(port)}",
        f"ca_file = {json.dumps(str(dd.device_ca.resolve()))}",
        f"cert_file = {json.dumps(str(dd.device_cert.resolve()))}",
    ]
    if key_backend == "file":
        lines.append(f"key_file = {json.dumps(str(dd.device_key.resolve()))}")
    else:
        lines.append('# the TLS key is sealed in the keystore as "device-tls" (P-256 scalar), not in a file')
    lines.append(f"management_pubkey_file = {json.dumps(str(dd.device_mgmt_pub.resolve()))}")
    return "\n".join(lines) + "\n"


def _store_key(dd: DataDir, key, backend: str) -> str:
    """Seal the device TLS key; returns the backend actually used ("keystore" or "file")."""
    from provisioning import devicekey

    return devicekey.store(dd, key, backend)


@click.group("device")
def command() -> None:
    """Onboard this lock: device key, certificate and config bundle."""


@command.command("init")
@click.option("--id", "device_id", required=True, help="Device id: the certificate CN, MQTT client id and topic level.")
@click.option("--broker", default="localhost:8883", show_default=True, help="MQTT broker HOST:PORT (TLS).")
@click.option("--ca-dir", type=PATH, default=None,
              help="Directory holding the management CA [default: $FACELOCK_CA_DIR, else ~/.local/share/facelock-ca].")
@click.option("--key-backend", type=click.Choice(["auto", "keystore", "file"]), default="auto", show_default=True,
              help="Where the device key goes: auto = the keystore when it is TPM-backed, else a 0600 file.")
@click.option("--days", type=click.IntRange(1, 3650), default=825, show_default=True, help="Certificate validity.")
@click.option("--force", is_flag=True, help="Re-initialise a device that already has a bundle.")
@data_dir_option
@passphrase_option
@json_option
def init(device_id: str, broker: str, ca_dir: Path | None, key_backend: str, days: int, force: bool,
         data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Create the device key, have the CA sign its CSR, and write the config bundle.

    Needs the CA passphrase (--passphrase-file or $FACELOCK_PASSPHRASE).
    """
    from provisioning import pkifiles as pki
    from provisioning.atomicfile import write_atomic
    from provisioning.datadir import DEVICE_JSON_VERSION, DataDir
    from provisioning.errors import AlreadyExistsError

    _check_device_id(device_id)
    _check_broker(broker)
    dd = DataDir(data_dir)
    if dd.has_device() and not force:
        existing = dd.device_config().get("device_id")
        raise AlreadyExistsError(f"device {existing!r} is already initialised in {dd.device} (use --force)")
    ca_dir = pki.ca_dir_for(ca_dir, data_dir)
    DataDir(ca_dir).require_ca()
    passphrase = read_passphrase(passphrase_file, what="CA passphrase")
    key, csr, cert, ca_cert, ca = _issue(dd, ca_dir, passphrase, device_id, days)
    used = _store_key(dd, key, key_backend)
    write_atomic(dd.device / "device.csr", pki.csr_pem(csr), 0o644)
    pki.save_cert(dd.device_ca, ca_cert)
    pki.save_cert(dd.device_cert, cert)
    write_atomic(dd.device_mgmt_pub, ca.cmd_pub.read_bytes(), 0o644)
    bundle = {
        "version": DEVICE_JSON_VERSION,
        "device_id": device_id,
        "broker": broker,
        "key_backend": used,
        "ca_cert": dd.device_ca.name,
        "device_cert": dd.device_cert.name,
        "device_key": dd.device_key.name if used == "file" else "keystore:device-tls",
        "management_public_key": dd.device_mgmt_pub.name,
        "cert_fingerprint_sha256": pki.fingerprint(cert),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_atomic(dd.device / MQTT_SNIPPET, mqtt_snippet(dd, device_id, broker, used).encode(), 0o644)
    # device.json last: its presence is what marks the device as initialised.
    write_atomic(dd.device_json, json.dumps(bundle, indent=2).encode(), 0o644)
    if as_json:
        emit_json(bundle)
    else:
        click.echo(f"device {device_id} initialised: certificate until {bundle['not_after']}, key in {used}, "
                   f"broker {broker}; bundle in {dd.device}")


@command.command("renew")
@click.option("--ca-dir", type=PATH, default=None,
              help="Directory holding the management CA [default: $FACELOCK_CA_DIR, else ~/.local/share/facelock-ca].")
@click.option("--days", type=click.IntRange(1, 3650), default=825, show_default=True, help="Certificate validity.")
@data_dir_option
@passphrase_option
@json_option
def renew(ca_dir: Path | None, days: int, data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Replace the device key and certificate with fresh ones (same id, broker and trust anchor)."""
    from provisioning import pkifiles as pki
    from provisioning.atomicfile import write_atomic
    from provisioning.datadir import DataDir

    dd = DataDir(data_dir)
    bundle = dd.require_device()
    ca_dir = pki.ca_dir_for(ca_dir, data_dir)
    DataDir(ca_dir).require_ca()
    passphrase = read_passphrase(passphrase_file, what="CA passphrase")
    old = pki.load_cert(dd.device_cert)
    key, csr, cert, ca_cert, _ca = _issue(dd, ca_dir, passphrase, bundle["device_id"], days)
    used = _store_key(dd, key, bundle.get("key_backend", "auto"))
    write_atomic(dd.device / "device.csr", pki.csr_pem(csr), 0o644)
    pki.save_cert(dd.device_ca, ca_cert)
    pki.save_cert(dd.device_cert, cert)
    bundle.update(
        key_backend=used,
        device_key=dd.device_key.name if used == "file" else "keystore:device-tls",
        cert_fingerprint_sha256=pki.fingerprint(cert),
        not_after=cert.not_valid_after_utc.isoformat(),
        renewed=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    write_atomic(dd.device / MQTT_SNIPPET,
                 mqtt_snippet(dd, bundle["device_id"], bundle["broker"], used).encode(), 0o644)
    write_atomic(dd.device_json, json.dumps(bundle, indent=2).encode(), 0o644)
    info = {"device_id": bundle["device_id"], "old_serial": f"{old.serial_number:x}",
            "new_serial": f"{cert.serial_number:x}", "not_after": bundle["not_after"]}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"device {bundle['device_id']} renewed: new certificate until {bundle['not_after']}")


@command.command("show")
@data_dir_option
@json_option
def show(data_dir: Path, as_json: bool) -> None:
    """Show this device's config bundle."""
    from provisioning.datadir import DataDir

    bundle = DataDir(data_dir).require_device()
    if as_json:
        emit_json(bundle)
    else:
        for k, v in bundle.items():
            click.echo(f"{k}: {v}")
