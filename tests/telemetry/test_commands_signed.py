"""Commands: only signed by the management key, fresh, never replayed, on the device's own topic, never
retained.  Unit checks of the verifier plus the same cases end to end through a real broker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.commands import CommandVerifier, NonceStore, load_public_key
from firmware.telemetry.errors import CommandRejected
from firmware.telemetry.events import decode
from firmware.telemetry.outbox import Outbox
from provisioning import pki
from provisioning.mosquitto import ADMIN_USER, LocalBroker
from provisioning.signing import sign_command
from tests.support.mqtt_broker import Sniffer, device_config, wait_until

NOW = 1_800_000_000.0


@pytest.fixture()
def keys(tmp_path: Path):
    sk = pki.create_signing_key()
    pki.write_public_key(tmp_path / "m.pub", sk)
    return sk, load_public_key(tmp_path / "m.pub")


@pytest.fixture()
def verifier(tmp_path: Path, keys):
    return CommandVerifier("door-1", keys[1], NonceStore(tmp_path / "n.db"), max_age_s=30, clock=lambda: NOW)


def _reason(verifier, topic, payload, retain=False) -> str:
    with pytest.raises(CommandRejected) as exc:
        verifier.verify(topic, payload, retain)
    return exc.value.reason


def test_valid_command_passes_once(verifier, keys) -> None:
    p = sign_command(keys[0], "door-1", "unlock", {"duration_s": 3}, ts=NOW - 2)
    cmd = verifier.verify("facelock/door-1/cmd/unlock", p)
    assert cmd.name == "unlock" and cmd.args == {"duration_s": 3}
    assert _reason(verifier, "facelock/door-1/cmd/unlock", p) == "replay"


def test_replay_refused_across_restart(tmp_path: Path, keys) -> None:
    p = sign_command(keys[0], "door-1", "lock", ts=NOW)
    CommandVerifier("door-1", keys[1], NonceStore(tmp_path / "n.db"), clock=lambda: NOW).verify(
        "facelock/door-1/cmd/lock", p)
    v2 = CommandVerifier("door-1", keys[1], NonceStore(tmp_path / "n.db"), clock=lambda: NOW + 1)
    assert _reason(v2, "facelock/door-1/cmd/lock", p) == "replay"


@pytest.mark.parametrize("case,expected", [
    ("stale", "stale"), ("future", "stale"), ("other_key", "bad_signature"), ("tampered", "bad_signature"),
    ("unsigned", "unsigned"), ("other_device", "wrong_device"), ("other_topic_name", "wrong_topic"),
    ("not_json", "malformed"), ("huge", "malformed"), ("version", "unknown_version"), ("retained", "retained"),
    ("bad_args", "bad_args"), ("foreign_topic", "wrong_topic"), ("unknown", "unknown_command"),
])
def test_bad_commands_refused_with_a_reason(verifier, keys, case, expected) -> None:
    sk = keys[0]
    topic = "facelock/door-1/cmd/unlock"
    retain = False
    p = sign_command(sk, "door-1", "unlock", ts=NOW)
    if case == "stale":
        p = sign_command(sk, "door-1", "unlock", ts=NOW - 31)
    elif case == "future":
        p = sign_command(sk, "door-1", "unlock", ts=NOW + 31)
    elif case == "other_key":
        p = sign_command(pki.create_signing_key(), "door-1", "unlock", ts=NOW)
    elif case == "tampered":
        d = json.loads(p)
        d["args"] = {"duration_s": 30}
        p = json.dumps(d).encode()
    elif case == "unsigned":
        d = json.loads(p)
        del d["sig"]
        p = json.dumps(d).encode()
    elif case == "other_device":
        p = sign_command(sk, "door-2", "unlock", ts=NOW)
    elif case == "other_topic_name":
        p = sign_command(sk, "door-1", "lock", ts=NOW)
    elif case == "not_json":
        p = b"UNLOCK"
    elif case == "huge":
        p = b"{" + b" " * 100_000 + b"}"
    elif case == "version":
        d = json.loads(p)
        d["v"] = 9
        p = json.dumps(d).encode()
    elif case == "retained":
        retain = True
    elif case == "bad_args":
        p = sign_command(sk, "door-1", "unlock", {"duration_s": 3600}, ts=NOW)
    elif case == "foreign_topic":
        topic = "facelock/door-2/cmd/unlock"
    elif case == "unknown":
        topic = "facelock/door-1/cmd/selfdestruct"
        p = sign_command(sk, "door-1", "selfdestruct", ts=NOW)
    assert _reason(verifier, topic, p, retain) == expected


# -- end to end ------------------------------------------------------------------------------------
class Door:
    """A device with a TelemetryClient whose command handler records what it was asked to do."""

    def __init__(self, broker: LocalBroker, tmp_path: Path, device: str = "door-1") -> None:
        self.done: list = []
        self.lock = threading.Lock()
        self.outbox = Outbox(tmp_path / f"{device}-outbox.db")
        self.client = TelemetryClient(device_config(broker, device, require_receipt=False), self.outbox,
                                      on_command=self.handle)

    def handle(self, cmd) -> str:
        with self.lock:
            self.done.append(cmd)
        return f"{cmd.name} done"


def test_commands_end_to_end(broker: LocalBroker, tmp_path: Path) -> None:
    sk = pki.load_signing_key(broker.pki.signing_key)
    admin = Sniffer(broker, ADMIN_USER, ["facelock/door-1/cmd/result"])
    door = Door(broker, tmp_path)
    events = Sniffer(broker, "facelock-monitor", ["facelock/door-1/event/#"])
    door.client.start()
    try:
        assert door.client.wait_connected(10)
        time.sleep(0.3)  # let the device's subscription settle
        good = sign_command(sk, "door-1", "unlock", {"duration_s": 2})
        admin.publish("facelock/door-1/cmd/unlock", good)
        assert wait_until(lambda: len(door.done) == 1)
        assert admin.wait_for(lambda ms: any(json.loads(m.payload).get("ok") is True for m in ms))

        bad = [
            ("facelock/door-1/cmd/unlock", good),                                             # replay
            ("facelock/door-1/cmd/unlock", sign_command(sk, "door-1", "unlock", ts=time.time() - 300)),  # stale
            ("facelock/door-1/cmd/unlock", sign_command(pki.create_signing_key(), "door-1", "unlock")),  # mis-signed
            ("facelock/door-1/cmd/unlock", json.dumps({"v": 1, "name": "unlock"}).encode()),  # unsigned
            ("facelock/door-1/cmd/lockdown", b"\x00\xff garbage"),                            # malformed
            ("facelock/door-1/cmd/unlock", b"x" * 200_000),                                  # huge
        ]
        for topic, payload in bad:
            admin.publish(topic, payload)
        assert wait_until(lambda: door.client.stats["commands_rejected"] >= len(bad))
        time.sleep(0.2)
        assert len(door.done) == 1  # nothing else was executed
        assert admin.wait_for(lambda ms: sum(1 for m in ms if json.loads(m.payload).get("ok") is False) >= len(bad))
        # Rejections are reported as events (through the outbox).
        assert events.wait_for(lambda ms: sum(1 for m in ms if m.topic.endswith("/command_rejected")) >= len(bad))
        reasons = {decode(m.payload).reason for m in events.messages if m.topic.endswith("/command_rejected")}
        assert {"replay", "stale", "bad_signature", "unsigned", "malformed"} <= reasons

        # The device still works after all that.
        admin.publish("facelock/door-1/cmd/lock", sign_command(sk, "door-1", "lock"))
        assert wait_until(lambda: [c.name for c in door.done] == ["unlock", "lock"])
    finally:
        door.client.stop()
        admin.close()
        events.close()


def test_retained_unlock_never_opens_the_door_on_reconnect(broker: LocalBroker, tmp_path: Path) -> None:
    sk = pki.load_signing_key(broker.pki.signing_key)
    admin = Sniffer(broker, ADMIN_USER, [])
    # A (signed, fresh) UNLOCK left retained on the topic before the device connects.
    admin.publish("facelock/door-1/cmd/unlock", sign_command(sk, "door-1", "unlock"), retain=True)
    door = Door(broker, tmp_path)
    door.client.start()
    try:
        assert door.client.wait_connected(10)
        time.sleep(1.0)
        assert door.done == []
        # And a retained message arriving live is refused too (retain flag set by the publisher is kept
        # only for new subscribers, so simulate the reconnect by restarting the client).
        door.client.stop()
        door2 = Door(broker, tmp_path / "again")
        door2.client.start()
        assert door2.client.wait_connected(10)
        time.sleep(1.0)
        assert door2.done == []
        door2.client.stop()
    finally:
        door.client.stop()
        admin.close()
