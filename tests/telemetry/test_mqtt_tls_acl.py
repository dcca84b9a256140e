"""Mutual TLS and the ACL against a real mosquitto: who may connect, and who may touch which topics."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox
from provisioning import pki
from provisioning.mosquitto import MONITOR_USER, LocalBroker
from tests.support.mqtt_broker import Sniffer, device_config, wait_until


def _connects(broker: LocalBroker, ctx: ssl.SSLContext, client_id: str = "probe", timeout: float = 5.0) -> bool:
    """True only if the broker answers CONNECT with a successful CONNACK and keeps the session up.

    Under TLS 1.3 a refused client certificate shows up late (after the handshake), as a disconnect, so
    the connection must also survive a short while."""
    ok = threading.Event()
    gone = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.tls_set_context(ctx)
    c.on_connect = lambda cl, u, f, rc, p: ok.set() if not rc.is_failure else gone.set()
    c.on_disconnect = lambda *a: gone.set()
    try:
        c.connect(broker.host, broker.port)
    except (OSError, ssl.SSLError):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not gone.is_set():
        if c.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
            gone.set()
            break
        if ok.is_set() and time.monotonic() > deadline - timeout / 2:
            break
    result = ok.is_set() and not gone.is_set()
    c.disconnect()
    return result


def _ctx(broker: LocalBroker, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(broker.pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_good_client_certificate_is_accepted(broker: LocalBroker) -> None:
    f = broker.pki.client("door-1")
    assert _connects(broker, _ctx(broker, f.cert, f.key), "door-1")


def test_client_without_certificate_is_refused(broker: LocalBroker) -> None:
    assert not _connects(broker, _ctx(broker))


def test_certificate_from_another_ca_is_refused(broker: LocalBroker, tmp_path: Path) -> None:
    rogue_ca = pki.create_ca("Rogue CA")
    rogue = pki.issue_cert(rogue_ca, "door-1")
    pki.write_cert(tmp_path / "r.pem", rogue.cert)
    pki.write_key(tmp_path / "r.key", rogue.key)
    assert not _connects(broker, _ctx(broker, tmp_path / "r.pem", tmp_path / "r.key"), "door-1")


def _old_tls_ctx(broker: LocalBroker, max_version: ssl.TLSVersion) -> ssl.SSLContext:
    f = broker.pki.client("door-1")
    ctx = _ctx(broker, f.cert, f.key)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let *our* side offer old TLS, so it is the broker refusing
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = max_version
    return ctx


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_below_1_2_is_refused(broker: LocalBroker) -> None:
    assert _connects(broker, _old_tls_ctx(broker, ssl.TLSVersion.TLSv1_2), "door-1")  # control: 1.2 is fine
    assert not _connects(broker, _old_tls_ctx(broker, ssl.TLSVersion.TLSv1_1), "door-1")
    assert not _connects(broker, _old_tls_ctx(broker, ssl.TLSVersion.TLSv1), "door-1")


def test_device_refuses_a_server_certificate_from_another_ca(tmp_path: Path, broker: LocalBroker) -> None:
    other = LocalBroker(tmp_path / "other")  # its own CA
    other.start()
    try:
        cfg = device_config(broker, "door-1", port=other.port)  # trusts `broker`'s CA only
        client = TelemetryClient(cfg, Outbox(tmp_path / "o.db"))
        client.start()
        try:
            assert not client.wait_connected(3)
            assert client.stats["connect_failures"] >= 1
        finally:
            client.stop()
    finally:
        other.stop()


def test_device_cannot_touch_another_devices_topics(broker: LocalBroker, tmp_path: Path) -> None:
    watcher = Sniffer(broker, MONITOR_USER, ["facelock/#"])
    attacker = Sniffer(broker, "door-1", ["facelock/door-2/#"])
    victim = Sniffer(broker, "door-2", [])
    try:
        # Reading another device's subtree: the broker delivers nothing to the attacker.
        victim.publish("facelock/door-2/event/door_opened", b"victim's own event")
        assert watcher.wait_for(lambda ms: any(m.topic == "facelock/door-2/event/door_opened" for m in ms))
        # Writing there: mosquitto refuses (for MQTT v5 it may drop the connection; paho reconnects).
        for topic in ("facelock/door-2/event/access_granted", "facelock/door-2/cmd/unlock"):
            attacker.client.publish(topic, b'{"forged": true}', qos=1)
            time.sleep(0.2)
        assert wait_until(attacker.client.is_connected, 15)
        attacker.publish("facelock/door-1/event/heartbeat", b"own topic")  # control: allowed
        assert watcher.wait_for(lambda ms: any(m.topic == "facelock/door-1/event/heartbeat" for m in ms))
        time.sleep(0.3)
        assert [t for t in watcher.topics() if t.startswith("facelock/door-2/")] == ["facelock/door-2/event/door_opened"]
        assert attacker.topics() == []
    finally:
        victim.close()
        watcher.close()
        attacker.close()


def test_device_events_flow_with_will_and_availability(broker: LocalBroker, tmp_path: Path) -> None:
    watcher = Sniffer(broker, MONITOR_USER, ["facelock/door-1/#"])
    ob = Outbox(tmp_path / "o.db")
    client = TelemetryClient(device_config(broker, "door-1", require_receipt=False), ob)
    try:
        client.start()
        assert client.wait_connected(10)
        e = ob.put(make_event("door-1", "door_opened"))
        assert watcher.wait_for(lambda ms: any(m.topic == "facelock/door-1/event/door_opened" for m in ms))
        assert wait_until(lambda: len(ob) == 0)  # deleted after PUBACK when receipts are off
        assert any(e.id.encode() in m.payload for m in watcher.messages)
        assert watcher.wait_for(lambda ms: any(m.topic == "facelock/door-1/availability" and m.payload == b"online"
                                               for m in ms))
        broker_log_before = broker.log_tail()
        assert "door-1" in broker_log_before
    finally:
        client.stop()
    assert watcher.wait_for(lambda ms: ms[-1].topic == "facelock/door-1/availability"
                            and ms[-1].payload == b"offline")
    watcher.close()


@pytest.mark.parametrize("device_id", ["door-1"])
def test_last_will_says_offline_when_the_device_dies(broker: LocalBroker, device_id: str) -> None:
    watcher = Sniffer(broker, MONITOR_USER, [f"facelock/{device_id}/availability"])
    f = broker.pki.client(device_id)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    c.tls_set_context(_ctx(broker, f.cert, f.key))
    c.will_set(f"facelock/{device_id}/availability", b"offline", qos=1, retain=True)
    c.connect(broker.host, broker.port, keepalive=5)
    c.loop(0.5)
    c.socket().close()  # vanish without DISCONNECT
    try:
        assert watcher.wait_for(lambda ms: any(m.payload == b"offline" for m in ms), timeout=15)
    finally:
        watcher.close()
