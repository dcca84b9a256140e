"""Home Assistant discovery, the retained state, and the HA bridge (LOCK/UNLOCK -> signed commands)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from firmware.config_errors import ConfigError
from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.config import MqttConfig
from firmware.telemetry.errors import TelemetryError
from firmware.telemetry.ha_discovery import discovery_messages
from firmware.telemetry.outbox import Outbox
from provisioning import pki
from provisioning.grants import make_grant
from provisioning.monitor.service import MonitorService
from provisioning.monitor.store import MonitorStore
from provisioning.mosquitto import ADMIN_USER, HA_USER, MONITOR_USER, LocalBroker
from tests.support.mqtt_broker import Sniffer, device_config, monitor_config, wait_until


def test_discovery_payloads_describe_the_lock_safely() -> None:
    msgs = dict(discovery_messages("door-1"))
    lock = json.loads(msgs["homeassistant/lock/door-1/lock/config"])
    assert lock["command_topic"] == "facelock/door-1/ha/set"
    assert lock["retain"] is False  # a retained UNLOCK must never exist
    assert (lock["payload_lock"], lock["payload_unlock"]) == ("LOCK", "UNLOCK")
    assert {lock[k] for k in ("state_locked", "state_unlocked", "state_jammed", "state_locking",
                              "state_unlocking")} == {"LOCKED", "UNLOCKED", "JAMMED", "LOCKING", "UNLOCKING"}
    assert lock["availability_topic"] == "facelock/door-1/availability"
    door = json.loads(msgs["homeassistant/binary_sensor/door-1/door/config"])
    tamper = json.loads(msgs["homeassistant/binary_sensor/door-1/tamper/config"])
    last = json.loads(msgs["homeassistant/sensor/door-1/last_event/config"])
    assert door["device_class"] == "door" and tamper["device_class"] == "tamper"
    assert last["state_topic"] == "facelock/door-1/state"


def test_device_publishes_retained_state_but_no_discovery(broker: LocalBroker, tmp_path: Path) -> None:
    client = TelemetryClient(device_config(broker, "door-1"), Outbox(tmp_path / "o.db"))
    client.start()
    try:
        assert client.wait_connected(10)
        client.publish_state(lock="UNLOCKED", door="open", tamper=True, last_event="access_granted")
        with pytest.raises(TelemetryError):
            client.publish_state(lock="AJAR")
        # A late subscriber gets state and availability retained; discovery is the monitor's job (the broker
        # refuses devices every homeassistant/ topic), so the device publishes none.
        watcher = Sniffer(broker, MONITOR_USER, ["homeassistant/#", "facelock/door-1/state",
                                                  "facelock/door-1/availability"])
        try:
            assert watcher.wait_for(lambda ms: len({m.topic for m in ms}) >= 2 and any(
                m.topic.endswith("/state") and json.loads(m.payload)["lock"] == "UNLOCKED" for m in ms))
            state = [json.loads(m.payload) for m in watcher.messages if m.topic.endswith("/state")][-1]
            assert state["door"] == "open" and state["tamper"] is True and state["last_event"] == "access_granted"
            assert all(m.retain for m in watcher.messages)
            assert not [m.topic for m in watcher.messages if m.topic.startswith("homeassistant/")]
        finally:
            watcher.close()
    finally:
        client.stop()


def test_home_assistant_unlock_goes_through_the_signing_bridge(broker: LocalBroker, tmp_path: Path) -> None:
    done: list = []
    lock = threading.Lock()

    def handle(cmd):
        with lock:
            done.append(cmd.name)

    client = TelemetryClient(device_config(broker, "door-1"), Outbox(tmp_path / "o.db"), on_command=handle)
    db = tmp_path / "m.db"
    mgmt = pki.load_signing_key(broker.pki.signing_key)
    bridge = pki.create_signing_key()
    pki.write_key(tmp_path / "ha.key", bridge)
    (tmp_path / "ha-grant.json").write_text(json.dumps(make_grant(mgmt, bridge.public_key(), {"door-1": ["lock", "unlock"]},
                                                                  time.time() + 3600)))
    mon = MonitorService(monitor_config(broker, db, ha_key_file=str(tmp_path / "ha.key"),
                                        ha_grant_file=str(tmp_path / "ha-grant.json"), ha_unlock_allowed=("door-1",)),
                         MonitorStore(db), [])
    ha = Sniffer(broker, HA_USER, [])  # Home Assistant's identity
    client.start()
    mon.start()
    try:
        assert client.wait_connected(10) and mon.wait_connected(10)
        wait_until(lambda: False, timeout=0.3)
        # Home Assistant cannot sign (and the ACL keeps it off the command topics): a plain UNLOCK that
        # does reach the command topic (here from the admin identity) is refused as unsigned.
        own = Sniffer(broker, ADMIN_USER, [])
        own.publish("facelock/door-1/cmd/unlock", b"UNLOCK")
        own.close()
        assert wait_until(lambda: client.stats["commands_rejected"] == 1)
        # ...but through ha/set the monitor's bridge signs it, and the door obeys.
        ha.publish("facelock/door-1/ha/set", b"UNLOCK")
        ha.publish("facelock/door-1/ha/set", b"OPEN SESAME")  # not a known payload: counted, dropped
        assert wait_until(lambda: done == ["unlock"])
        assert wait_until(lambda: mon.stats["malformed"] == 1)
    finally:
        ha.close()
        mon.stop()
        client.stop()


def test_mqtt_config_refuses_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    cfg = MqttConfig.from_dict({"device_id": "door-1", "port": 8883, "ca_file": "pki/ca.pem",
                                "backoff_min_s": 1}, base_dir=tmp_path)
    assert cfg.ca_file == str(tmp_path / "pki/ca.pem") and cfg.backoff_min_s == 1.0
    for bad, key in [({"device_id": "a/b"}, "device_id"), ({"port": 0}, "port"), ({"port": "1883"}, "port"),
                     ({"tls_min_version": "1.1"}, "tls_min_version"), ({"passwrod": "x"}, "passwrod"),
                     ({"require_receipt": "yes"}, "require_receipt"), ({"max_inflight": 0}, "max_inflight")]:
        with pytest.raises(ConfigError, match=key):
            MqttConfig.from_dict(bad)
    assert ADMIN_USER != MONITOR_USER
