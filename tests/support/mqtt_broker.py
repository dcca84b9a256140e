"""Reusable helpers for tests against a real mosquitto (mutual TLS, FaceLock ACL).

`broker_fixture(tmp_path)` yields a started `provisioning.mosquitto.LocalBroker` (a CA, a server certificate
for 127.0.0.1, client certificates per identity via `broker.pki.client(name)`, an Ed25519 management key at
`broker.pki.signing_key`) and always stops it.  `device_config`, `monitor_config`, `Sniffer` and
`wait_until` are small helpers other suites may import.
"""

from __future__ import annotations

import shutil
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.telemetry.config import MqttConfig
from provisioning.monitor.config import MonitorConfig
from provisioning.mosquitto import MONITOR_USER, LocalBroker

pytestmark = []


def broker_fixture(tmp_path: Path) -> Iterator[LocalBroker]:
    """Generator for a pytest fixture: a started broker in tmp_path/broker, stopped afterwards."""
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed (make system-deps installs it)")
    b = LocalBroker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def device_config(broker: LocalBroker, device: str, **over) -> MqttConfig:
    files = broker.pki.client(device)
    values = dict(device_id=device, host=broker.host, port=broker.port, ca_file=str(broker.pki.ca),
                  cert_file=str(files.cert), key_file=str(files.key),
                  management_pubkey_file=str(broker.pki.signing_pub), backoff_min_s=0.05, backoff_max_s=0.5)
    values.update(over)
    return MqttConfig(**values)


def monitor_config(broker: LocalBroker, db: Path, **over) -> MonitorConfig:
    f = broker.pki.client(MONITOR_USER)
    values = dict(host=broker.host, port=broker.port, ca_file=str(broker.pki.ca), cert_file=str(f.cert),
                  key_file=str(f.key), db=str(db), backoff_min_s=0.05, backoff_max_s=0.5)
    values.update(over)
    return MonitorConfig(**values)


class Sniffer:
    """A plain paho client (given identity) that records every message it receives."""

    def __init__(self, broker: LocalBroker, identity: str, topics: list[str]) -> None:
        files = broker.pki.client(identity)
        ctx = ssl.create_default_context(cafile=str(broker.pki.ca))
        ctx.load_cert_chain(str(files.cert), str(files.key))
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sniff-{identity}-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set_context(ctx)

        def on_connect(c, u, f, rc, p):
            if topics:
                c.subscribe([(t, 1) for t in topics])
            else:
                self.subscribed.set()

        def on_subscribe(c, u, mid, rcs, p):
            self.granted = rcs
            self.subscribed.set()

        def on_message(c, u, msg):
            with self.lock:
                self.messages.append(msg)

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "sniffer could not subscribe"
        assert wait_until(self.client.is_connected, 10), "sniffer not connected"

    def topics(self) -> list[str]:
        with self.lock:
            return [m.topic for m in self.messages]

    def wait_for(self, pred: Callable[[list[mqtt.MQTTMessage]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred(list(self.messages)):
                    return True
            time.sleep(0.02)
        return False

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        return info

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(pred: Callable[[], bool], timeout: float = 15.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
