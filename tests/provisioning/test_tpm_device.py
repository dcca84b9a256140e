"""With a TPM configured (a real swtpm), the device key and the users' secrets are TPM-sealed.

The config file's [keystore] section picks the backend, as on the device.  The
device's TLS private key then never exists on disk in the clear or as a PEM file:
only as a TPM-sealed blob, and the CLI reconstructs the same key from the TPM.
"""

from __future__ import annotations

import json
import shutil

import pytest
from cryptography import x509

from tests.provisioning.conftest import Cli, assert_one_line_error
from tests.provisioning.test_end_to_end import NAME_A, NAME_B

pytestmark = pytest.mark.skipif(shutil.which("swtpm") is None, reason="needs swtpm (apt-get install swtpm)")


@pytest.fixture
def swtpm(tmp_path):
    from tests.support.swtpm import Swtpm

    tpm = Swtpm(tmp_path / "swtpm-state")
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()


def test_device_key_and_user_secrets_sealed_by_the_tpm(swtpm, faces, tmp_path):
    cfg = tmp_path / "facelock.toml"
    cfg.write_text(f'[device]\nid = "tpm-door"\n\n[keystore]\nbackend = "tpm"\ntpm_tcti = "{swtpm.tcti}"\n')
    cli = Cli(tmp_path / "data")
    c = ["--config", cfg]
    cli("ca", "init", *c, ok=True)
    bundle = json.loads(cli("device", "init", "--id", "tpm-door", "--json", *c, ok=True).stdout)
    assert bundle["key_backend"] == "keystore"
    dev = cli.data_dir / "device"
    assert not (dev / "device.key").exists()
    assert not (cli.data_dir / "keystore" / "device.secret").exists()  # no file KEK: the TPM seals
    keys = json.loads(cli("keys", "list", "--json", *c, ok=True).stdout)
    assert keys["backend"] == "tpm" and "device-tls" in {k["key_id"] for k in keys["keys"]}

    from firmware.keystore import KeystoreConfig, open_keystore

    ks = open_keystore(KeystoreConfig(backend="tpm", tpm_tcti=swtpm.tcti), cli.data_dir)
    scalar = ks.unseal("device-tls")
    cert = x509.load_pem_x509_certificate((dev / "device.crt").read_bytes())
    assert cert.public_key().public_numbers().x == _pub_x(scalar)
    for p in (cli.data_dir).rglob("*"):
        if p.is_file():
            assert scalar not in p.read_bytes(), f"device key in the clear in {p}"
    ks.close()

    # the whole workflow runs on the TPM keystore
    cli("enroll", NAME_A, "--images", faces.a_dir, *c, ok=True)
    cli("enroll", NAME_B, "--images", faces.b_dir, *c, ok=True)
    enc = tmp_path / "a.flk"
    cli("encrypt", faces.secret, "--user", NAME_A, "--probe", faces.a_probe, "-o", enc, *c, ok=True)
    out = tmp_path / "a.jpg"
    cli("decrypt", enc, "--probe", faces.a_probe, "-o", out, *c, ok=True)
    assert out.read_bytes() == faces.secret.read_bytes()
    assert_one_line_error(cli("decrypt", enc, "--probe", faces.b_probe, "-o", tmp_path / "b.jpg", *c), 3)

    # without the TPM nothing opens: a clear one-line error, not a traceback
    swtpm.stop()
    r = cli("decrypt", enc, "--probe", faces.a_probe, "-o", tmp_path / "c.jpg", *c)
    assert_one_line_error(r, 1)
    assert not (tmp_path / "c.jpg").exists()


def _pub_x(scalar: bytes) -> int:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1()).public_key().public_numbers().x
