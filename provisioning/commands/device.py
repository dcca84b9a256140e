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

def _check_device_id(device_id: str) -> str:
    from firmware.telemetry import topics
    from provisioning.errors import ProvisioningError

    # The id becomes an MQTT topic level and the certificate CN (= MQTT username via
    # use_identity_as_username), so '+', '#', '/', spaces and newlines must never get in (one rule for
    # the CLI, the daemon's config and the broker: topics.valid_device_id, a fullmatch), and a device
    # named like a service identity would get that service's rights on the broker.
    if not topics.valid_device_id(device_id):
        raise ProvisioningError(
            f"invalid device id {device_id!r}: use 1-64 letters, digits, '.', '-' or '_', starting with a letter "
            "or digit (it becomes an MQTT topic level)"
        )
    if topics.is_reserved(device_id):
        raise ProvisioningError(f"device id {device_id!r} is reserved for a FaceLock service identity")
    return device_id


def _check_broker(broker: str) -> str:
    from provisioning.errors import ProvisioningError

    host, sep, port = broker.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProvisioningError(f"invalid broker address {broker!r}: expected HOST:PORT, e.g. mqtt.example.org:8883")
    return broker


def _issue(dd: DataDir, ca_dir: Path, passphrase: bytes, device_id: str, days: int, replaces=()):
    """New device key + CSR, signed by the CA in ca_dir. Returns (key, csr, cert, ca_cert, ca, revoked).

    Every earlier certificate of this id (the CA's record of it, and `replaces`) goes on the CRL: a renewed
    or re-initialised device must not leave a second valid credential behind."""
    from provisioning import crl as crls
    from provisioning import pkifiles as pki
    from provisioning.datadir import DataDir

    ca = DataDir(ca_dir)
    ca.require_ca()
    ca_key = pki.load_key(ca.ca_key, passphrase)  # PassphraseError on a wrong passphrase
    ca_cert = pki.load_cert(ca.ca_cert)
    old = [c for c in replaces if c is not None]
    if ca.issued(device_id).is_file():
        old.append(pki.load_cert(ca.issued(device_id)))
    old_serials = sorted({c.serial_number for c in old if c.issuer == ca_cert.subject})
    key = pki.new_tls_key()
    csr = pki.make_csr(key, device_id)
    cert = pki.sign_csr(ca_key, ca_cert, csr, days=days)
    pki.verify_issued_by(cert, ca_cert)
    crls.write_crl(crls.crl_path(ca.pki), ca_key, ca_cert, [s for s in old_serials if s != cert.serial_number])
    pki.save_cert(ca.issued(device_id), cert)
    return key, csr, cert, ca_cert, ca, old_serials


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
    key, csr, cert, ca_cert, ca, _revoked = _issue(dd, ca_dir, passphrase, device_id, days)
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
    key, csr, cert, ca_cert, _ca, revoked = _issue(dd, ca_dir, passphrase, bundle["device_id"], days,
                                                   replaces=(old,))
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
            "new_serial": f"{cert.serial_number:x}", "not_after": bundle["not_after"],
            "revoked_serials": [f"{s:x}" for s in revoked]}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"device {bundle['device_id']} renewed: new certificate until {bundle['not_after']}; "
                   f"old certificate revoked (reload the broker to load the CRL)")


@command.command("revoke")
@click.option("--id", "device_id", required=True, help="The device whose certificate(s) to revoke.")
@click.option("--ca-dir", type=PATH, default=None,
              help="CA directory [default: $FACELOCK_CA_DIR, else ~/.local/share/facelock-ca].")
@click.option("--broker", default=None, help="Also delete the device from this running broker (HOST:PORT), "
              "which ends a session that is up; needs --broker-ca/--broker-cert/--broker-key.")
@click.option("--broker-ca", type=PATH, default=None, help="CA certificate the broker's server cert chains to.")
@click.option("--broker-cert", type=PATH, default=None, help="facelock-broker-admin client certificate.")
@click.option("--broker-key", type=PATH, default=None, help="facelock-broker-admin client key.")
@data_dir_option
@passphrase_option
@json_option
def revoke(device_id: str, ca_dir: Path | None, broker: str | None, broker_ca: Path | None, broker_cert: Path | None,
           broker_key: Path | None, data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Revoke a device: its certificate goes on the CA's CRL (CA_DIR/pki/crl.pem).

    A broker loading the CRL (`crlfile`) refuses the certificate from its next start or reload; with
    --broker the device is also deleted from the running broker's dynamic-security plugin at once."""
    from provisioning import crl as crls
    from provisioning import pkifiles as pki
    from provisioning.datadir import DataDir
    from provisioning.errors import ProvisioningError

    _check_device_id(device_id)
    if broker:
        _check_broker(broker)
        if not (broker_ca and broker_cert and broker_key):
            raise ProvisioningError("--broker needs --broker-ca, --broker-cert and --broker-key")
    ca = DataDir(pki.ca_dir_for(ca_dir, data_dir))
    ca.require_ca()
    if not ca.issued(device_id).is_file():
        raise ProvisioningError(f"this CA has no certificate on record for device {device_id!r}")
    passphrase = read_passphrase(passphrase_file, what="CA passphrase")
    ca_key = pki.load_key(ca.ca_key, passphrase)
    ca_cert = pki.load_cert(ca.ca_cert)
    cert = pki.load_cert(ca.issued(device_id))
    path = crls.crl_path(ca.pki)
    crls.write_crl(path, ca_key, ca_cert, [cert.serial_number])
    info = {"device_id": device_id, "revoked_serial": f"{cert.serial_number:x}", "crl": str(path),
            "broker_session_ended": False}
    if broker:
        from provisioning.mosquitto import DynsecAdmin

        host, _, port = broker.rpartition(":")
        admin = DynsecAdmin(host, int(port), broker_ca, broker_cert, broker_key)
        try:
            admin.remove_device(device_id)
        finally:
            admin.close()
        info["broker_session_ended"] = True
    if as_json:
        emit_json(info)
    else:
        click.echo(f"device {device_id} revoked (serial {info['revoked_serial']}); CRL {path}"
                   + ("; removed from the broker" if broker else "")
                   + "; re-run `facelock broker config` and restart the broker to load the new CRL")


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


FLEET_CSR = "fleet.csr"


@command.command("fleet-csr")
@click.option("--id", "device_id", required=True, help="Door id: the certificate CN, MQTT client id and topic level.")
@click.option("--out", type=PATH, default=None, help="Where to write the CSR [default: DATA_DIR/device/fleet.csr].")
@click.option("--force", is_flag=True, help="Replace the TLS key of a device that already has a bundle.")
@data_dir_option
@json_option
def fleet_csr(device_id: str, out: Path | None, force: bool, data_dir: Path, as_json: bool) -> None:
    """Make this lock's request to join a centre (for `facelock-central devices submit`).

    A new TLS key (a 0600 PEM file: the daemon's TLS stack loads the key from a file) and the X25519 key
    the centre seals templates to (created in this lock's keystore, never leaving it), bound together in
    one CSR signed by the TLS key (firmware.fleet.doorkey).
    """
    import hashlib

    from firmware.fleet.doorkey import enrollment_csr, public_bytes, template_key
    from provisioning import devicekey, stores
    from provisioning import pkifiles as pki
    from provisioning.atomicfile import write_atomic
    from provisioning.datadir import DataDir
    from provisioning.errors import AlreadyExistsError

    _check_device_id(device_id)
    dd = DataDir(data_dir)
    if dd.has_device() and not force:
        existing = dd.device_config().get("device_id")
        raise AlreadyExistsError(f"device {existing!r} is already initialised in {dd.device} (use --force)")
    xpub = public_bytes(template_key(stores.open_keystore(dd)))
    key = pki.new_tls_key()
    csr = enrollment_csr(device_id, key, xpub)
    dd.device.mkdir(mode=0o700, parents=True, exist_ok=True)
    devicekey.store(dd, key, "file")
    path = out or dd.device / FLEET_CSR
    write_atomic(path, csr, 0o644)
    info = {"device_id": device_id, "csr": str(path), "template_key_sha256": hashlib.sha256(xpub).hexdigest()}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"fleet request for {device_id} in {path}: submit it with `facelock-central devices submit`, "
                   "then install the answer with `facelock device fleet-install DIR --broker HOST:PORT`")


@command.command("fleet-install")
@click.argument("answer", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--broker", required=True, help="The centre's MQTT broker HOST:PORT (TLS).")
@data_dir_option
@json_option
def fleet_install(answer: Path, broker: str, data_dir: Path, as_json: bool) -> None:
    """Install the centre's answer (device.pem, ca.pem, central.pub from `devices submit --out DIR`).

    The certificate must be for this lock's TLS key (made by `fleet-csr`).  Writes the device bundle and
    an `[mqtt]` + `[fleet]` section (mqtt.toml) for the lock's config file.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    from provisioning import pkifiles as pki
    from provisioning.atomicfile import write_atomic
    from provisioning.datadir import DEVICE_JSON_VERSION, DataDir
    from provisioning.errors import ProvisioningError

    _check_broker(broker)
    dd = DataDir(data_dir)
    if not dd.device_key.is_file():
        raise ProvisioningError(f"no TLS key in {dd.device}: run `facelock device fleet-csr` first")
    cert = pki.load_cert(answer / "device.pem")
    ca_cert = pki.load_cert(answer / "ca.pem")
    pki.verify_issued_by(cert, ca_cert)
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    key = pki.load_key(dd.device_key, None)
    if cert.public_key().public_bytes(serialization.Encoding.DER, raw) != \
            key.public_key().public_bytes(serialization.Encoding.DER, raw):
        raise ProvisioningError(f"{answer / 'device.pem'} is not for this lock's TLS key (another lock's answer?)")
    device_id = _check_device_id(str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value))
    central_pub = (answer / "central.pub").read_bytes()
    from firmware.telemetry.commands import load_public_key

    load_public_key(answer / "central.pub")  # an Ed25519 PEM, or a typed error before anything is written
    pki.save_cert(dd.device_ca, ca_cert)
    pki.save_cert(dd.device_cert, cert)
    write_atomic(dd.device_mgmt_pub, central_pub, 0o644)
    bundle = {
        "version": DEVICE_JSON_VERSION, "device_id": device_id, "broker": broker, "key_backend": "file",
        "ca_cert": dd.device_ca.name, "device_cert": dd.device_cert.name, "device_key": dd.device_key.name,
        "management_public_key": dd.device_mgmt_pub.name, "fleet": True,
        "cert_fingerprint_sha256": pki.fingerprint(cert), "not_after": cert.not_valid_after_utc.isoformat(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    snippet = mqtt_snippet(dd, device_id, broker, "file") + "\n[fleet]\nenabled = true\n"
    write_atomic(dd.device / MQTT_SNIPPET, snippet.encode(), 0o644)
    write_atomic(dd.device_json, json.dumps(bundle, indent=2).encode(), 0o644)
    if as_json:
        emit_json(bundle)
    else:
        click.echo(f"device {device_id} joined the centre: certificate until {bundle['not_after']}; "
                   f"paste {dd.device / MQTT_SNIPPET} into the lock's config")
