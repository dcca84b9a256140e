"""`facelock broker config|add-device|remove-device`: the production mosquitto set up as the tests run it.

`config` writes, from the CA's device registry (the certificates in CA_DIR/pki/issued that the CRL does not
revoke), a mosquitto.conf (mutual TLS, TLS >= 1.2, the CA's CRL, the dynamic-security plugin) and the
plugin's dynamic-security.json (default deny, one client + role per identity: provisioning/mosquitto.py).
`add-device` / `remove-device` change a running broker through the plugin's control topic, as
facelock-broker-admin (remove also ends the device's session).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import click

from provisioning.options import PATH, data_dir_option, emit_json, json_option


@click.group("broker")
def command() -> None:
    """The MQTT broker's configuration and its device registry."""


@command.command("config")
@click.option("--out", "out_dir", type=PATH, required=True, help="Directory for mosquitto.conf and dynamic-security.json.")
@click.option("--ca-dir", type=PATH, default=None,
              help="CA directory [default: $FACELOCK_CA_DIR, else ~/.local/share/facelock-ca].")
@click.option("--server-cert", type=PATH, required=True, help="The broker's TLS certificate (signed by the CA).")
@click.option("--server-key", type=PATH, required=True, help="Its private key.")
@click.option("--listen", default="0.0.0.0:8883", show_default=True, help="HOST:PORT of the TLS listener.")
@click.option("--device", "extra", multiple=True, help="Also register this device id (repeat).")
@click.option("--user", default="mosquitto", show_default=True, help="The user mosquitto drops to when started as root.")
@data_dir_option
@json_option
def config(out_dir: Path, ca_dir: Path | None, server_cert: Path, server_key: Path, listen: str,
           extra: tuple[str, ...], user: str, data_dir: Path, as_json: bool) -> None:
    """Write mosquitto.conf + dynamic-security.json for the devices this CA issued and did not revoke."""
    from provisioning import crl as crls
    from provisioning import pkifiles
    from provisioning.atomicfile import write_atomic
    from provisioning.commands.device import _check_device_id
    from provisioning.datadir import DataDir
    from provisioning.errors import ProvisioningError
    from provisioning.mosquitto import mosquitto_conf, write_dynsec_config

    ca = DataDir(pkifiles.ca_dir_for(ca_dir, data_dir))
    ca.require_ca()
    ca_cert = pkifiles.load_cert(ca.ca_cert)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProvisioningError(f"invalid --listen {listen!r}: expected HOST:PORT")
    out = Path(out_dir)
    crl = crls.crl_path(ca.pki)
    if not crl.is_file():
        raise ProvisioningError(f"no CRL at {crl} yet: issue a device first (`device init` writes it)")
    revoked = crls.revoked_serials(crl, ca_cert)
    devices = set()
    for cert_file in sorted((ca.pki / "issued").glob("*.crt")):
        if pkifiles.load_cert(cert_file).serial_number not in revoked:
            devices.add(_check_device_id(cert_file.stem))
    devices.update(_check_device_id(d) for d in extra)
    # Copies the broker reads (it drops to `user`, who cannot read the operator's CA directory).
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "ca.crt", ca.ca_cert.read_bytes(), 0o644)
    write_atomic(out / "crl.pem", crl.read_bytes(), 0o644)
    write_atomic(out / "server.crt", Path(server_cert).read_bytes(), 0o644)
    write_atomic(out / "server.key", Path(server_key).read_bytes(), 0o600)
    dynsec = out / "dynamic-security.json"
    write_dynsec_config(dynsec, devices)
    pki = SimpleNamespace(ca=(out / "ca.crt").resolve(), server_cert=(out / "server.crt").resolve(),
                          server_key=(out / "server.key").resolve())
    text = mosquitto_conf(int(port), pki, dynsec.resolve(), (out / "mosquitto.log").resolve(), user,
                          (out / "crl.pem").resolve(), host)
    write_atomic(out / "mosquitto.conf", text.encode(), 0o644)
    if os.geteuid() == 0:
        # mosquitto started as root drops to `user`: that user must read its key and rewrite the plugin's JSON.
        for owned in (out / "server.key", dynsec, out):
            try:
                shutil.chown(owned, user=user)
            except (LookupError, OSError):
                click.echo(f"facelock: warning: could not give {owned} to user {user!r}", err=True)
    info = {"mosquitto_conf": str(out / "mosquitto.conf"), "dynamic_security": str(dynsec),
            "devices": sorted(devices), "revoked_serials": len(revoked)}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"broker config in {out}: {len(devices)} device(s); run `mosquitto -c {out / 'mosquitto.conf'}`;"
                   f" after `device revoke` re-run this (new CRL) and restart the broker")


def _admin(broker: str, ca: Path, cert: Path, key: Path):
    from provisioning.commands.device import _check_broker
    from provisioning.mosquitto import DynsecAdmin

    host, _, port = _check_broker(broker).rpartition(":")
    return DynsecAdmin(host, int(port), ca, cert, key)


def _admin_options(func):
    for opt in (click.option("--broker", required=True, help="HOST:PORT of the running broker."),
                click.option("--broker-ca", type=PATH, required=True, help="CA certificate of the broker."),
                click.option("--broker-cert", type=PATH, required=True, help="facelock-broker-admin certificate."),
                click.option("--broker-key", type=PATH, required=True, help="facelock-broker-admin key.")):
        func = opt(func)
    return func


@command.command("add-device")
@click.option("--id", "device_id", required=True)
@_admin_options
@json_option
def add_device(device_id: str, broker: str, broker_ca: Path, broker_cert: Path, broker_key: Path,
               as_json: bool) -> None:
    """Register a device with a running broker (its own-topics role)."""
    from provisioning.commands.device import _check_device_id

    admin = _admin(broker, broker_ca, broker_cert, broker_key)
    try:
        admin.add_device(_check_device_id(device_id))
    finally:
        admin.close()
    if as_json:
        emit_json({"device_id": device_id, "added": True})
    else:
        click.echo(f"{device_id} registered")


@command.command("remove-device")
@click.option("--id", "device_id", required=True)
@_admin_options
@json_option
def remove_device(device_id: str, broker: str, broker_ca: Path, broker_cert: Path, broker_key: Path,
                  as_json: bool) -> None:
    """Delete a device from a running broker (its session, if up, ends at once)."""
    from provisioning.commands.device import _check_device_id

    admin = _admin(broker, broker_ca, broker_cert, broker_key)
    try:
        admin.remove_device(_check_device_id(device_id))
    finally:
        admin.close()
    if as_json:
        emit_json({"device_id": device_id, "removed": True})
    else:
        click.echo(f"{device_id} removed")


