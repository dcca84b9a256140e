"""Onboarding against real PostgreSQL and a real mosquitto: one-time token or operator approval, the
centre signs the CSR, the lock connects with mutual TLS; a revoked lock is refused by the broker (CRL).
Attacker cases: a reused, expired or misbound token, a forged CSR, a CSR without a template key."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from central.app import Centre
from central.errors import OnboardingError
from central.models import AuditEntry, Device, EnrollmentToken
from central.simdoor import SimDoor
from provisioning import pkifiles
from provisioning.mosquitto import LocalBroker
from tests.central.conftest import start_broker


def _connects(door: SimDoor, broker: LocalBroker, timeout: float = 5.0) -> bool:
    """A full MQTT CONNECT + SUBSCRIBE round trip with the door's certificate (TLS 1.3 reports a refused
    client certificate late, as a disconnect, so only a granted SUBACK counts)."""
    ctx = ssl.create_default_context(cafile=str(door.dir / "ca.pem"))
    ctx.load_cert_chain(str(door.dir / "device.pem"), str(door.dir / "device.key"))
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{door.id}-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    granted: list = []
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"facelock/{door.id}/policy", 1) if not rc.is_failure else None
    c.on_subscribe = lambda cl, u, mid, rcs, p: granted.extend(rcs)
    try:
        c.connect(broker.host, broker.port)
    except (OSError, ssl.SSLError):
        return False
    c.loop_start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not granted:
        time.sleep(0.02)
    c.disconnect()
    c.loop_stop()
    return bool(granted) and not granted[0].is_failure


def test_token_onboarding_signs_at_once_and_the_lock_connects(centre: Centre, fleet_broker: LocalBroker,
                                                              tmp_path: Path) -> None:
    door = SimDoor(tmp_path / "d1", "door-1")
    token = centre.registry.create_token("alice", device_id="door-1")
    e = centre.registry.submit(door.csr(), token)
    assert e.status == "active" and e.cert_pem and "BEGIN CERTIFICATE" in e.cert_pem
    door.install(e)  # the centre gave it its broker account: nobody registers it by hand
    cert = pkifiles.load_cert(door.dir / "device.pem")
    pkifiles.verify_issued_by(cert, centre.keys.ca().cert)
    assert _connects(door, fleet_broker)
    with centre.db.session() as s:
        dev = s.get(Device, "door-1")
        assert dev.status == "active" and len(dev.template_pubkey) == 32
        tok = s.scalars(select(EnrollmentToken)).one()
        assert tok.used_by == "door-1" and token not in tok.token_hash  # only the hash is stored
        assert [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))] == \
            ["token.create", "device.enroll"]


def test_a_token_works_once_and_only_for_its_device(centre: Centre, tmp_path: Path) -> None:
    token = centre.registry.create_token("alice", device_id="door-1")
    with pytest.raises(OnboardingError):
        centre.registry.submit(SimDoor(tmp_path / "x", "door-x").csr(), token)  # bound to door-1
    centre.registry.submit(SimDoor(tmp_path / "a", "door-1").csr(), token)
    with pytest.raises(OnboardingError):
        centre.registry.submit(SimDoor(tmp_path / "b", "door-2").csr(), token)  # already used
    expired = centre.registry.create_token("alice", ttl_s=-1)
    with pytest.raises(OnboardingError):
        centre.registry.submit(SimDoor(tmp_path / "c", "door-3").csr(), expired)
    with pytest.raises(OnboardingError):
        centre.registry.submit(SimDoor(tmp_path / "d", "door-4").csr(), "guessed-token")
    assert [d["device"] for d in centre.registry.list()] == ["door-1"]


def test_without_a_token_the_request_waits_for_an_operator(centre: Centre, fleet_broker: LocalBroker,
                                                           tmp_path: Path) -> None:
    door = SimDoor(tmp_path / "d2", "door-2")
    e = centre.registry.submit(door.csr())
    assert e.status == "pending" and e.cert_pem is None
    assert [p["device"] for p in centre.registry.pending()] == ["door-2"]
    approved = centre.registry.approve("door-2", "bob")
    assert approved.status == "active"
    door.install(approved)
    assert _connects(door, fleet_broker)
    assert centre.registry.pending() == []
    with pytest.raises(OnboardingError):  # an active id cannot be enrolled again (no key takeover)
        centre.registry.submit(SimDoor(tmp_path / "evil", "door-2").csr())


def test_forged_or_incomplete_csrs_are_refused(centre: Centre, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    door = SimDoor(tmp_path / "d", "door-5")
    pem = door.csr()
    with pytest.raises(OnboardingError):
        centre.registry.submit(pem.replace(b"MII", b"MIJ", 1))
    with pytest.raises(OnboardingError):
        centre.registry.submit(b"not a csr")
    plain = (x509.CertificateSigningRequestBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "door-6")]))
             .sign(door.tls_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(OnboardingError, match="template key"):
        centre.registry.submit(plain)
    bad_cn = (x509.CertificateSigningRequestBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facelock/+/#")]))
              .sign(door.tls_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    with pytest.raises(OnboardingError, match="device id"):
        centre.registry.submit(bad_cn)
    assert centre.registry.list() == []


def test_a_revoked_lock_is_refused_by_the_broker(centre: Centre, tmp_path: Path) -> None:
    """Revoking ends the door's session at once (the centre deletes its broker account), and the CRL
    refuses the certificate at any later handshake, also after the broker restarts."""
    broker = start_broker(centre, tmp_path / "broker")
    door = SimDoor(tmp_path / "d3", "door-3")
    door.install(centre.registry.submit(door.csr(), centre.registry.create_token("alice")))
    try:
        assert _connects(door, broker)
        ctx = ssl.create_default_context(cafile=str(door.dir / "ca.pem"))
        ctx.load_cert_chain(str(door.dir / "device.pem"), str(door.dir / "device.key"))
        live = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="door-3", protocol=mqtt.MQTTv5)
        live.tls_set_context(ctx)
        up, down = threading.Event(), threading.Event()
        live.on_connect = lambda *a: up.set()
        live.on_disconnect = lambda *a: down.set()
        live.connect(broker.host, broker.port)
        live.loop_start()
        try:
            assert up.wait(10)
            centre.registry.revoke("door-3", "alice")
            assert down.wait(10)  # the live session ended at once, no broker restart
        finally:
            live.disconnect()
            live.loop_stop()
        assert not _connects(door, broker, timeout=3)
        broker.stop()  # mosquitto reads the CRL when it starts
        broker.start()
        assert not _connects(door, broker, timeout=3)
        with pytest.raises(OnboardingError):  # and it cannot come back under the same id
            centre.registry.submit(door.csr(), centre.registry.create_token("alice"))
    finally:
        broker.stop()
