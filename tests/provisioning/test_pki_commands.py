"""`facelock ca init` and `facelock device init|renew|show`: real keys, real X.509, real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from tests.provisioning.conftest import PASSPHRASE, assert_one_line_error


def _init(cli) -> None:
    cli("ca", "init", ok=True)
    cli("device", "init", "--id", "front-door", "--broker", "mqtt.local:8883", ok=True)


def test_ca_init_creates_encrypted_keys_and_a_ca(cli):
    r = cli("ca", "init", "--json", ok=True)
    info = json.loads(r.stdout)
    pki = cli.ca_dir / "pki"
    assert not (cli.data_dir / "pki").exists()  # never in the lock's data dir
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert info["ca_fingerprint_sha256"] == ca.fingerprint(ca.signature_hash_algorithm).hex()
    from provisioning import keywrap, pkifiles

    for name in ("ca.key", "cmd_signing.key"):
        p = pki / name
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert keywrap.is_wrapped(p.read_bytes())
        key = pkifiles.load_key(p, PASSPHRASE.encode())
        assert isinstance(key, ec.EllipticCurvePrivateKey if name == "ca.key" else ed25519.Ed25519PrivateKey)
    pub = serialization.load_pem_public_key((pki / "cmd_signing.pub").read_bytes())
    assert isinstance(pub, ed25519.Ed25519PublicKey)


def test_ca_init_refuses_an_existing_ca_and_keeps_it(cli):
    cli("ca", "init", ok=True)
    before = (cli.ca_dir / "pki" / "ca.crt").read_bytes()
    assert_one_line_error(cli("ca", "init"), 1, "already exists")
    assert (cli.ca_dir / "pki" / "ca.crt").read_bytes() == before
    cli("ca", "init", "--force", ok=True)
    assert (cli.ca_dir / "pki" / "ca.crt").read_bytes() != before


def test_ca_init_without_a_passphrase_is_refused(cli):
    cli.passphrase = None
    assert_one_line_error(cli("ca", "init"), 1, "no CA passphrase")
    assert not (cli.ca_dir / "pki" / "ca.key").exists()


def test_empty_or_missing_passphrase_file_is_refused(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert_one_line_error(cli("ca", "init", "--passphrase-file", empty), 1, "empty")
    assert_one_line_error(cli("ca", "init", "--passphrase-file", tmp_path / "nope"), 1, "cannot read passphrase")


def test_passphrase_file_takes_the_first_line(cli, tmp_path):
    pf = tmp_path / "pass"
    pf.write_text("s3cret-from-file\nignored\n")
    cli.passphrase = None
    cli("ca", "init", "--passphrase-file", pf, ok=True)
    from provisioning import pkifiles

    pkifiles.load_key(cli.ca_dir / "pki" / "ca.key", b"s3cret-from-file")


def test_device_init_writes_a_bundle_signed_by_the_ca(cli):
    _init(cli)
    dev = cli.data_dir / "device"
    bundle = json.loads((dev / "device.json").read_text())
    assert bundle["device_id"] == "front-door" and bundle["broker"] == "mqtt.local:8883"
    ca = x509.load_pem_x509_certificate((dev / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((dev / "device.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "front-door"
    assert (dev / "mgmt_cmd.pub").read_bytes() == (cli.ca_dir / "pki" / "cmd_signing.pub").read_bytes()
    # the private key matches the certificate, and is never world-readable
    from provisioning.datadir import DataDir
    from provisioning.devicekey import load

    key = load(DataDir(cli.data_dir))
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    if bundle["key_backend"] == "file":
        assert stat.S_IMODE((dev / "device.key").stat().st_mode) == 0o600
    # the [mqtt] snippet is a valid section of the device config, pointing at these files
    import tomllib

    from firmware.telemetry.config import MqttConfig

    mq = MqttConfig.from_dict(tomllib.loads((dev / "mqtt.toml").read_text())["mqtt"])
    assert (mq.device_id, mq.host, mq.port) == ("front-door", "mqtt.local", 8883)
    assert Path(mq.cert_file).read_bytes() == (dev / "device.crt").read_bytes()
    assert Path(mq.management_pubkey_file).read_bytes() == (dev / "mgmt_cmd.pub").read_bytes()
    if bundle["key_backend"] == "file":
        assert Path(mq.key_file) == (dev / "device.key").resolve()
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_cert_chain(mq.cert_file, mq.key_file)  # the TLS stack accepts the pair as written
    # the openssl CLI agrees the chain is valid
    out = subprocess.run(["openssl", "verify", "-CAfile", dev / "ca.crt", dev / "device.crt"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_device_init_bad_inputs(cli, tmp_path):
    # no CA yet: a distinct exit code (4) so scripts can tell "set up first" from bad input
    assert_one_line_error(cli("device", "init", "--id", "d1"), 4, "ca init")
    cli("ca", "init", ok=True)
    assert_one_line_error(cli("device", "init", "--id", "bad/id"), 1, "invalid device id")
    assert_one_line_error(cli("device", "init", "--id", "d1", "--broker", "nohost"), 1, "invalid broker")
    assert_one_line_error(cli("device", "init", "--id", "d1", env={"FACELOCK_PASSPHRASE": "wrong"}), 1,
                          "wrong passphrase")
    assert not (cli.data_dir / "device" / "device.json").exists()
    cli("device", "init", "--id", "d1", ok=True)
    assert_one_line_error(cli("device", "init", "--id", "d2"), 1, "already initialised")
    assert json.loads((cli.data_dir / "device" / "device.json").read_text())["device_id"] == "d1"


def test_device_renew_replaces_key_and_certificate(cli):
    _init(cli)
    dev = cli.data_dir / "device"
    old = x509.load_pem_x509_certificate((dev / "device.crt").read_bytes())
    r = cli("device", "renew", "--json", ok=True)
    new = x509.load_pem_x509_certificate((dev / "device.crt").read_bytes())
    assert json.loads(r.stdout)["new_serial"] == f"{new.serial_number:x}"
    assert new.serial_number != old.serial_number
    assert new.public_key().public_numbers() != old.public_key().public_numbers()
    new.verify_directly_issued_by(x509.load_pem_x509_certificate((dev / "ca.crt").read_bytes()))
    from provisioning.datadir import DataDir
    from provisioning.devicekey import load

    assert load(DataDir(cli.data_dir)).public_key().public_numbers() == new.public_key().public_numbers()


def test_device_renew_bad_inputs(cli):
    assert_one_line_error(cli("device", "renew"), 4, "device init")
    _init(cli)
    before = (cli.data_dir / "device" / "device.crt").read_bytes()
    assert_one_line_error(cli("device", "renew", env={"FACELOCK_PASSPHRASE": "wrong"}), 1, "wrong passphrase")
    assert (cli.data_dir / "device" / "device.crt").read_bytes() == before


def test_data_dir_from_environment_and_config(tmp_path):
    from provisioning.options import resolve_data_dir

    cfg = tmp_path / "facelock.toml"
    cfg.write_text("[device]\nid = \"d1\"\ndata_dir = \"/srv/facelock\"\n")
    env = dict(os.environ)
    try:
        os.environ.pop("FACELOCK_DATA_DIR", None)
        assert resolve_data_dir(None, cfg) == Path("/srv/facelock")
        os.environ["FACELOCK_DATA_DIR"] = str(tmp_path / "env")
        assert resolve_data_dir(None, cfg) == tmp_path / "env"
        assert resolve_data_dir(tmp_path / "cli", cfg) == tmp_path / "cli"
    finally:
        os.environ.clear()
        os.environ.update(env)


def test_real_process_exit_code_and_single_stderr_line(tmp_path):
    """The installed entry point, as a script sees it: exit code 4 and one line on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "FACELOCK_PASSPHRASE"}
    env["FACELOCK_DATA_DIR"] = str(tmp_path / "fresh")
    p = subprocess.run([sys.executable, "-m", "provisioning.cli", "device", "show"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 4
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("facelock: error: no device initialised")


def test_device_init_with_the_ca_in_another_data_dir(tmp_path):
    """The CA lives on the management host; the device's data dir gets only the signed bundle."""
    from tests.provisioning.conftest import Cli

    mgmt, dev = Cli(tmp_path / "mgmt"), Cli(tmp_path / "dev")
    mgmt("ca", "init", ok=True)
    assert_one_line_error(dev("device", "init", "--id", "d9"), 4, "ca init")
    dev("device", "init", "--id", "d9", "--ca-dir", mgmt.ca_dir, ok=True)
    assert not (dev.data_dir / "pki").exists()
    assert (mgmt.ca_dir / "pki" / "issued" / "d9.crt").read_bytes() == (dev.data_dir / "device" / "device.crt").read_bytes()
    dev("device", "renew", "--ca-dir", mgmt.ca_dir, ok=True)
    ca = x509.load_pem_x509_certificate((mgmt.ca_dir / "pki" / "ca.crt").read_bytes())
    x509.load_pem_x509_certificate((dev.data_dir / "device" / "device.crt").read_bytes()).verify_directly_issued_by(ca)


def test_device_key_as_a_file(cli):
    cli("ca", "init", ok=True)
    info = json.loads(cli("device", "init", "--id", "f1", "--key-backend", "file", "--json", ok=True).stdout)
    assert info["key_backend"] == "file"
    key = serialization.load_pem_private_key((cli.data_dir / "device" / "device.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((cli.data_dir / "device" / "device.crt").read_bytes())
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
