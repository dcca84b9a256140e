"""Issue 11, item 2: one device's credential must not open another door through the Home Assistant bridge.

Real parts: mosquitto with the project's broker config, the real device client (TelemetryClient, whose
command verifier is the daemon's), the real monitor and its HA bridge, `facelock ca init` / `facelock ha
grant` in subprocesses.  Attacks:
  (a) door-1 publishes UNLOCK on its own `ha/set` (the old bridge signed it with the management key);
  (b) "shed" publishes a retained discovery config whose command_topic is door-1's `ha/set`, so pressing
      shed's lock in Home Assistant would unlock door-1;
  (c) Home Assistant itself asks to UNLOCK a device it may only lock, or floods UNLOCKs;
  (d) whoever holds the bridge's scoped key signs more than the grant allows (lockdown, another door,
      a grant it extended itself);
  (e) the management key lying unencrypted on the monitor (the old `ha_signing_key_file`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.outbox import Outbox
from provisioning.monitor.service import MonitorService
from provisioning.monitor.store import MonitorStore
from provisioning.mosquitto import ADMIN_USER, HA_USER, MONITOR_USER, LocalBroker
from tests.support.mqtt_broker import Sniffer, broker_fixture, device_config, monitor_config, wait_until

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"


@pytest.fixture()
def broker(tmp_path: Path):
    yield from broker_fixture(tmp_path)


def facelock(*args: str, data_dir: Path, ca_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FACELOCK_PASSPHRASE": PASSPHRASE, "FACELOCK_DATA_DIR": str(data_dir),
           "FACELOCK_CA_DIR": str(ca_dir or data_dir / "no-ca")}
    return subprocess.run([sys.executable, "-m", "provisioning.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


class Door:
    def __init__(self, broker: LocalBroker, tmp_path: Path, device: str, mgmt_pub: Path | None = None) -> None:
        self.done: list[str] = []
        self.lock = threading.Lock()
        self.outbox = Outbox(tmp_path / f"{device}-outbox.db")
        over = {"management_pubkey_file": str(mgmt_pub)} if mgmt_pub else {}
        self.client = TelemetryClient(device_config(broker, device, **over), self.outbox, on_command=self.handle)

    def handle(self, cmd) -> str:
        with self.lock:
            self.done.append(cmd.name)
        return "ok"

    def rejected(self) -> int:
        return self.client.stats["commands_rejected"]


@pytest.fixture()
def bridge(tmp_path: Path) -> dict[str, Path]:
    """A management CA, and a bridge key + grant from `facelock ha grant`: unlock door-1, lock shed."""
    ca = tmp_path / "ca"
    r = facelock("ca", "init", data_dir=tmp_path / "no-lock-here", ca_dir=ca)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "monitor"
    r = facelock("ha", "grant", "--unlock", "door-1", "--lock", "shed", "--out", str(out),
                 data_dir=tmp_path / "no-lock-here", ca_dir=ca)
    assert r.returncode == 0, r.stderr
    return {"ca": ca, "pub": ca / "pki" / "cmd_signing.pub", "key": out / "ha.key", "grant": out / "ha-grant.json",
            "out": out}


def _monitor(broker: LocalBroker, tmp_path: Path, bridge: dict[str, Path], **over) -> MonitorService:
    db = tmp_path / "monitor.db"
    cfg = monitor_config(broker, db, ha_key_file=str(bridge["key"]), ha_grant_file=str(bridge["grant"]),
                         ha_unlock_allowed=("door-1",), **over)
    return MonitorService(cfg, MonitorStore(db), [])


def test_a_device_cannot_unlock_through_its_own_ha_set(broker: LocalBroker, tmp_path: Path, bridge) -> None:
    door = Door(broker, tmp_path, "door-1", bridge["pub"])
    mon = _monitor(broker, tmp_path, bridge)
    door.client.start()
    mon.start()
    try:
        assert door.client.wait_connected(10) and mon.wait_connected(10)
        time.sleep(0.3)
        attacker = Sniffer(broker, "door-1", [])  # door-1's own stolen credential
        for _ in range(5):
            attacker.client.publish("facelock/door-1/ha/set", b"UNLOCK", qos=1)
        time.sleep(2.0)
        attacker.close()
        assert door.done == [], f"door-1's own credential got {door.done} signed through the bridge"
        assert mon.stats["ha_commands"] == 0
        # Home Assistant's own identity still works (door-1 is in ha_unlock_allowed).
        ha = Sniffer(broker, HA_USER, [])
        ha.publish("facelock/door-1/ha/set", b"UNLOCK")
        assert wait_until(lambda: door.done == ["unlock"], 10)
        ha.close()
    finally:
        mon.stop()
        door.client.stop()


def test_a_device_cannot_publish_discovery_pointing_at_another_door(broker: LocalBroker, tmp_path: Path) -> None:
    door1 = Door(broker, tmp_path, "door-1")
    shed = Door(broker, tmp_path, "shed")
    db = tmp_path / "monitor.db"
    mon = MonitorService(monitor_config(broker, db), MonitorStore(db), [])
    mon.start()
    door1.client.start()
    shed.client.start()
    try:
        assert mon.wait_connected(10) and door1.client.wait_connected(10) and shed.client.wait_connected(10)
        time.sleep(1.0)
        evil = {"name": "Shed lock", "unique_id": "facelock_shed_lock", "command_topic": "facelock/door-1/ha/set",
                "payload_unlock": "UNLOCK", "payload_lock": "LOCK", "state_topic": "facelock/shed/state"}
        attacker = Sniffer(broker, "shed", [])
        for topic in ("homeassistant/lock/shed/lock/config", "homeassistant/lock/facelock_evil/config"):
            attacker.client.publish(topic, json.dumps(evil).encode(), qos=1, retain=True)
        time.sleep(1.0)
        attacker.close()
        # Home Assistant connects later and reads every retained discovery config.
        ha = Sniffer(broker, HA_USER, ["homeassistant/#"])
        assert ha.wait_for(lambda ms: any(m.topic == "homeassistant/lock/shed/lock/config" for m in ms), 10), \
            "no discovery for shed (the monitor should publish it)"
        time.sleep(0.5)
        configs = {m.topic: json.loads(m.payload) for m in ha.messages if m.payload}
        ha.close()
    finally:
        shed.client.stop()
        door1.client.stop()
        mon.stop()
    for topic, cfg in configs.items():
        device = topic.split("/")[2]
        if "command_topic" in cfg:
            assert cfg["command_topic"] == f"facelock/{device}/ha/set", f"{topic} points at {cfg['command_topic']}"
    assert "homeassistant/lock/facelock_evil/config" not in configs


def test_ha_unlock_only_where_allowed_and_rate_limited(broker: LocalBroker, tmp_path: Path, bridge) -> None:
    door = Door(broker, tmp_path, "door-1", bridge["pub"])
    shed = Door(broker, tmp_path, "shed", bridge["pub"])
    mon = _monitor(broker, tmp_path, bridge, ha_rate_per_min=3)
    for c in (door.client, shed.client):
        c.start()
    mon.start()
    ha = None
    try:
        assert mon.wait_connected(10) and door.client.wait_connected(10) and shed.client.wait_connected(10)
        time.sleep(0.3)
        ha = Sniffer(broker, HA_USER, [])
        ha.publish("facelock/shed/ha/set", b"UNLOCK")  # shed: lock only
        ha.publish("facelock/shed/ha/set", b"LOCK")
        assert wait_until(lambda: shed.done == ["lock"], 10)
        for _ in range(20):
            ha.publish("facelock/door-1/ha/set", b"UNLOCK")
        time.sleep(2.0)
        assert shed.done == ["lock"], "HA unlocked a device outside ha_unlock_allowed"
        assert door.done == ["unlock"] * 3, f"rate limit 3/min, executed {len(door.done)} of 20"
        rules = [a["rule"] for a in mon.store.alerts()]
        assert rules.count("ha_refused") == 1 + 17
    finally:
        if ha:
            ha.close()
        mon.stop()
        door.client.stop()
        shed.client.stop()


def test_the_scoped_key_signs_nothing_beyond_its_grant(broker: LocalBroker, tmp_path: Path, bridge) -> None:
    from provisioning.signing import sign_command

    key = serialization.load_pem_private_key(bridge["key"].read_bytes(), None)
    grant = json.loads(bridge["grant"].read_text())
    door = Door(broker, tmp_path, "door-1", bridge["pub"])
    shed = Door(broker, tmp_path, "shed", bridge["pub"])
    door.client.start()
    shed.client.start()
    admin = Sniffer(broker, ADMIN_USER, [])  # an identity that may write command topics at all
    try:
        assert door.client.wait_connected(10) and shed.client.wait_connected(10)
        time.sleep(0.3)
        widened = json.loads(json.dumps(grant))
        widened["body"]["devices"]["shed"] = ["lock", "unlock"]
        attempts = [
            ("facelock/door-1/cmd/lockdown", sign_command(key, "door-1", "lockdown", {"on": True}, grant=grant)),
            ("facelock/door-1/cmd/revoke-user", sign_command(key, "door-1", "revoke-user", {"user_id": "u1"},
                                                             grant=grant)),
            ("facelock/shed/cmd/unlock", sign_command(key, "shed", "unlock", grant=grant)),  # shed: lock only
            ("facelock/shed/cmd/unlock", sign_command(key, "shed", "unlock", grant=widened)),  # self-widened
            ("facelock/door-1/cmd/unlock", sign_command(key, "door-1", "unlock")),  # scoped key, no grant
        ]
        for topic, payload in attempts:
            admin.publish(topic, payload)
        assert wait_until(lambda: door.rejected() + shed.rejected() == len(attempts), 10)
        assert door.done == [] and shed.done == []
        admin.publish("facelock/door-1/cmd/unlock", sign_command(key, "door-1", "unlock", grant=grant))
        assert wait_until(lambda: door.done == ["unlock"], 10)
    finally:
        admin.close()
        door.client.stop()
        shed.client.stop()


def test_the_management_key_is_never_stored_unencrypted(tmp_path: Path, bridge, broker: LocalBroker) -> None:
    from provisioning import pkifiles

    mgmt = pkifiles.load_key(bridge["ca"] / "pki" / "cmd_signing.key", PASSPHRASE.encode())
    raw = mgmt.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    pem = mgmt.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    for root in (bridge["out"], bridge["ca"]):
        for f in root.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert raw not in data and pem not in data, f"management key in clear in {f}"
    assert oct(bridge["key"].stat().st_mode & 0o777) == "0o600"
    # The monitor refuses to be configured with the management key.
    cfg = tmp_path / "monitor.toml"
    mon = broker.pki.client(MONITOR_USER)
    cfg.write_text(f'[monitor]\nha_signing_key_file = "{broker.pki.signing_key}"\ncert_file = "{mon.cert}"\n')
    r = facelock("monitor", "run", "--config", str(cfg), "--db", str(tmp_path / "m.db"), data_dir=tmp_path)
    assert r.returncode != 0 and "ha_signing_key_file" in r.stderr
