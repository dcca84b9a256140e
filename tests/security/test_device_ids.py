"""Issue 11, item 13: device identities.  The CLI runs as a subprocess, the broker is a real mosquitto with
the project's config (mutual TLS, dynamic-security, the CA's CRL).

Attacks: onboard a device whose id smuggles a newline (`re.match` with `$` let "door\\n" through) or takes a
service identity's name (a device called `facelock-monitor` would get the monitor's rights); keep using the
certificate a `device renew` replaced, or one `device revoke` revoked.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion

from provisioning import pki as loopback
from provisioning import pkifiles
from provisioning.mosquitto import LocalBroker

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"


def facelock(data_dir: Path, *args: str, ca_dir: Path | None = None) -> subprocess.CompletedProcess:
    """`facelock ...` with the lock's data dir and the management CA dir (never the same directory)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACELOCK_PASSPHRASE": PASSPHRASE,
           "FACELOCK_DATA_DIR": str(data_dir)}
    if ca_dir is not None:
        env["FACELOCK_CA_DIR"] = str(ca_dir)
    return subprocess.run([sys.executable, "-m", "provisioning.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def ca_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ca"
    r = facelock(tmp_path / "no-lock-here", "ca", "init", ca_dir=d)
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def shared_ca(tmp_path_factory) -> Path:
    """One CA for the id checks (they must never issue anything, so they may share it)."""
    d = tmp_path_factory.mktemp("shared-ca") / "ca"
    r = facelock(d.parent / "no-lock-here", "ca", "init", ca_dir=d)
    assert r.returncode == 0, r.stderr
    return d


@pytest.mark.parametrize("bad", ["door\n", "door\r", "door-1\n", "facelock-monitor", "facelock-admin",
                                 "facelock-ha", "FACELOCK-HA", "facelock-broker-admin", "a/b", "+", "door 1", ""])
def test_bad_and_reserved_device_ids_are_refused(tmp_path: Path, shared_ca: Path, bad: str) -> None:
    ca_dir = shared_ca
    lock = tmp_path / "lock"
    r = facelock(lock, "device", "init", "--id", bad, "--ca-dir", str(ca_dir), "--key-backend", "file")
    assert r.returncode != 0, f"device id {bad!r} was accepted"
    assert not (lock / "device" / "device.json").exists()
    assert not list((ca_dir / "pki" / "issued").glob("*")) if (ca_dir / "pki" / "issued").exists() else True


def _broker_for(ca_dir: Path, work: Path, devices: list[str]) -> LocalBroker:
    """A broker whose server certificate this CLI CA signed, loading the CA's CRL."""
    ca_cert = pkifiles.load_cert(ca_dir / "pki" / "ca.crt")
    ca_key = pkifiles.load_key(ca_dir / "pki" / "ca.key", PASSPHRASE.encode())
    issued = loopback.Issued(ca_key, ca_cert)
    d = work / "bpki"
    d.mkdir(parents=True)
    server = loopback.issue_cert(issued, "localhost", server=True, dns_names=("localhost",),
                                 ip_addresses=("127.0.0.1",))
    loopback.write_cert(d / "ca.pem", ca_cert)
    loopback.write_cert(d / "server.pem", server.cert)
    loopback.write_key(d / "server.key", server.key)
    sk = loopback.create_signing_key()
    loopback.write_key(d / "management.key", sk)
    loopback.write_public_key(d / "management.pub", sk)
    p = loopback.LoopbackPki(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "management.key",
                             d / "management.pub", issued)
    return LocalBroker(work / "broker", pki=p, devices=devices, crl_file=ca_dir / "pki" / "crl.pem")


def _session_up(broker: LocalBroker, cert: Path, key: Path, client_id: str, hold: float = 1.5) -> bool:
    """CONNACK success and the session survives `hold` s (TLS 1.3 reports a refused cert late, as a disconnect)."""
    ctx = ssl.create_default_context(cafile=str(broker.pki.ca))
    ctx.load_cert_chain(str(cert), str(key))
    ok, gone = threading.Event(), threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.on_connect = lambda cl, u, f, rc, p: ok.set() if not rc.is_failure else gone.set()
    c.on_disconnect = lambda *a: gone.set()
    try:
        c.connect(broker.host, broker.port)
    except (OSError, ssl.SSLError):
        return False
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and not gone.is_set():
        if c.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
            gone.set()
    up = ok.is_set() and not gone.is_set()
    try:
        c.disconnect()
    except Exception:  # noqa: BLE001
        pass
    return up


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_renew_revokes_the_old_certificate_and_revoke_ends_the_device(tmp_path: Path, ca_dir: Path) -> None:
    lock = tmp_path / "lock"
    r = facelock(lock, "device", "init", "--id", "door-1", "--ca-dir", str(ca_dir), "--key-backend", "file",
                 "--broker", "127.0.0.1:8883")
    assert r.returncode == 0, r.stderr
    # The attacker copies the device's credential before it is renewed.
    stolen = tmp_path / "stolen"
    stolen.mkdir()
    shutil.copy(lock / "device" / "device.crt", stolen / "old.crt")
    shutil.copy(lock / "device" / "device.key", stolen / "old.key")
    r = facelock(lock, "device", "renew", "--ca-dir", str(ca_dir))
    assert r.returncode == 0, r.stderr
    assert _serial(lock / "device" / "device.crt") != _serial(stolen / "old.crt")

    broker = _broker_for(ca_dir, tmp_path, ["door-1"])
    broker.start()
    try:
        new_cert, new_key = lock / "device" / "device.crt", lock / "device" / "device.key"
        assert _session_up(broker, new_cert, new_key, "door-1"), broker.log_tail()
        assert not _session_up(broker, stolen / "old.crt", stolen / "old.key", "door-1-old"), \
            "the certificate replaced by `device renew` still opens a session"

        # `device revoke` at the CA: on the CRL, and (with --broker) deleted from the running broker at once.
        adm = broker.raw_pki.client("facelock-broker-admin")
        ctx = ssl.create_default_context(cafile=str(broker.pki.ca))
        ctx.load_cert_chain(str(new_cert), str(new_key))
        live = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="door-1-live", protocol=mqtt.MQTTv5)
        live.tls_set_context(ctx)
        dropped = threading.Event()
        live.on_disconnect = lambda *a: dropped.set()
        live.connect(broker.host, broker.port)
        live.loop_start()
        try:
            time.sleep(0.5)
            r = facelock(tmp_path / "no-lock-here", "device", "revoke", "--ca-dir", str(ca_dir), "--id", "door-1",
                         "--broker", f"{broker.host}:{broker.port}",
                         "--broker-ca", str(broker.pki.ca), "--broker-cert", str(adm.cert),
                         "--broker-key", str(adm.key))
            assert r.returncode == 0, r.stderr
            assert dropped.wait(10), "the revoked device's live session was not ended"
        finally:
            live.loop_stop()
        crl = x509.load_pem_x509_crl((ca_dir / "pki" / "crl.pem").read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(_serial(new_cert)) is not None
        assert crl.get_revoked_certificate_by_serial_number(_serial(stolen / "old.crt")) is not None
        broker.stop()  # the broker reads its CRL at start
        broker.start()
        assert not _session_up(broker, new_cert, new_key, "door-1"), "a revoked certificate opens a session"
    finally:
        broker.stop()


def test_broker_config_from_the_registry_refuses_revoked_devices(tmp_path: Path, ca_dir: Path) -> None:
    """`facelock broker config` (the production broker) started as root drops to `mosquitto` and still reads
    its key, CRL and plugin config; it lets door-1 in and keeps the revoked door-2 out."""
    import pwd
    import signal
    import tempfile

    for dev in ("door-1", "door-2"):
        r = facelock(tmp_path / dev, "device", "init", "--id", dev, "--ca-dir", str(ca_dir), "--key-backend", "file")
        assert r.returncode == 0, r.stderr
    r = facelock(tmp_path / "no-lock-here", "device", "revoke", "--ca-dir", str(ca_dir), "--id", "door-2")
    assert r.returncode == 0, r.stderr
    ref = _broker_for(ca_dir, tmp_path, [])  # only for its server certificate and a free port
    out = Path(tempfile.mkdtemp(prefix="facelock-broker-"))  # pytest's tmp dirs are 0700: not for `mosquitto`
    try:
        os.chmod(out, 0o755)
        root = os.geteuid() == 0
        user = "mosquitto" if root else pwd.getpwuid(os.geteuid()).pw_name
        r = facelock(tmp_path / "no-lock-here", "broker", "config", "--out", str(out / "conf"), "--ca-dir", str(ca_dir),
                     "--server-cert", str(ref.raw_pki.server_cert), "--server-key", str(ref.raw_pki.server_key),
                     "--listen", f"127.0.0.1:{ref.port}", "--user", user, "--json")
        assert r.returncode == 0, r.stderr
        assert '"door-1"' in r.stdout and '"door-2"' not in r.stdout
        proc = subprocess.Popen(["mosquitto", "-c", str(out / "conf" / "mosquitto.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    import socket

                    socket.create_connection(("127.0.0.1", ref.port), timeout=0.2).close()
                    break
                except OSError:
                    assert proc.poll() is None, proc.stderr.read().decode()
                    time.sleep(0.05)
            d1, d2 = tmp_path / "door-1" / "device", tmp_path / "door-2" / "device"
            assert _session_up(ref, d1 / "device.crt", d1 / "device.key", "door-1"), \
                (out / "conf" / "mosquitto.log").read_text()[-2000:]
            assert not _session_up(ref, d2 / "device.crt", d2 / "device.key", "door-2")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    finally:
        shutil.rmtree(out, ignore_errors=True)
