"""Policy distribution end to end: real PostgreSQL, real mosquitto (mTLS), real door agents.

Enrollment once -> two doors (each gets the template sealed to its own key only), push and ack,
revocation reaching every door, a tampered / misdirected / replayed-old bundle refused by the door,
and a door offline during a push that catches up when it returns (even after the broker lost its
retained messages)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
import pytest

from central.app import Centre
from central.broker import CENTRAL_USER
from central.simdoor import SimDoor
from firmware.fleet.bundle import verify_bundle
from firmware.fleet.door import decide
from firmware.fleet.errors import BundleRejected, SealError
from firmware.fleet.sealing import open_template
from provisioning.mosquitto import LocalBroker
from tests.support.mqtt_broker import Sniffer, wait_until

OP = "op-alice"
MONDAY_NOON = dt.datetime(2026, 11, 30, 12, 0)


def _face(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(192).astype(np.float32)
    return v / np.linalg.norm(v)



def _doors(centre: Centre, broker: LocalBroker, tmp_path: Path, *ids: str, start: bool = True) -> list[SimDoor]:
    out = []
    for i in ids:
        door = SimDoor(tmp_path / i, i)
        door.install(centre.registry.submit(door.csr(), centre.registry.create_token(OP)))
        centre.directory.add_door(i, f"Door {i}", OP)
        if start:
            door.start_agent(broker.host, broker.port)
            assert door.agent.wait_connected(10)
        out.append(door)
    return out


def _in_sync(centre: Centre, timeout: float = 15.0) -> bool:
    return wait_until(lambda: all(s["in_sync"] for s in centre.policy.status()), timeout)


def test_enrolled_once_reaches_two_doors_sealed_to_each_door_only(centre, fleet_broker, distributor, tmp_path):
    a, b = _doors(centre, fleet_broker, tmp_path, "door-a", "door-b")
    try:
        face = _face(1)
        pid = centre.directory.add_person("Alice", OP)
        centre.directory.enroll("Alice", [face], OP)
        centre.directory.add_group("staff", OP)
        centre.directory.add_member("staff", "Alice", OP)
        centre.directory.grant("staff", "door-a", OP)
        centre.directory.grant("staff", "door-b", OP, schedule=[{"days": ["mon"], "start": "08:00", "end": "18:00"}])
        assert centre.policy.refresh() == {"door-a": 1, "door-b": 1}
        assert _in_sync(centre)
        for door in (a, b):
            gallery = door.galleries[-1]
            assert list(gallery) == [pid] and np.array_equal(gallery[pid][0], face)
            assert decide(door.applied[-1], gallery, face + 0.01 * _face(7), MONDAY_NOON).granted
        assert decide(b.applied[-1], b.galleries[-1], face, MONDAY_NOON.replace(hour=20)).reason == "schedule"
        assert decide(a.applied[-1], a.galleries[-1], face, MONDAY_NOON.replace(hour=20)).granted
        assert not decide(a.applied[-1], a.galleries[-1], _face(2), MONDAY_NOON).granted  # a stranger
        # A's sealed template is useless to B (and to anyone without A's key) and bound to its person.
        entry = a.applied[-1].person(pid).templates[0]
        with pytest.raises(SealError):
            open_template(b.template_key, "door-a", pid, entry.id, entry.sealed)
        with pytest.raises(SealError):
            open_template(a.template_key, "door-a", "someone-else", entry.id, entry.sealed)
        assert open_template(a.template_key, "door-a", pid, entry.id, entry.sealed)[6:] == face.astype("<f4").tobytes()
        # nothing changed -> no new version
        assert centre.policy.refresh() == {}
    finally:
        a.stop_agent(), b.stop_agent()


def test_push_is_acked_and_the_centre_shows_who_runs_what(centre, fleet_broker, distributor, tmp_path):
    (a,) = _doors(centre, fleet_broker, tmp_path, "door-a")
    try:
        centre.directory.add_person("Bob", OP)
        centre.directory.enroll("Bob", [_face(3)], OP)
        centre.directory.add_group("g", OP)
        centre.directory.add_member("g", "Bob", OP)
        centre.directory.grant("g", "door-a", OP)
        for expected in (1, 2):
            if expected == 2:
                centre.directory.set_lockdown("door-a", "nobody", OP)
            assert centre.policy.refresh() == {"door-a": expected}
            assert _in_sync(centre)
            st = centre.policy.status()[0]
            assert st["version"] == st["acked_version"] == expected == a.running_version()
        assert a.applied[-1].lockdown == "nobody"
        assert not decide(a.applied[-1], a.galleries[-1], _face(3), MONDAY_NOON).granted
    finally:
        a.stop_agent()


def test_revoking_a_person_reaches_every_door(centre, fleet_broker, distributor, tmp_path):
    doors = _doors(centre, fleet_broker, tmp_path, "door-a", "door-b", "door-c")
    try:
        face = _face(4)
        pid = centre.directory.add_person("Carol", OP)
        centre.directory.enroll("Carol", [face], OP)
        centre.directory.add_group("all", OP)
        centre.directory.add_member("all", "Carol", OP)
        for d in doors:
            centre.directory.grant("all", d.id, OP)
        centre.policy.refresh()
        assert _in_sync(centre)
        assert all(decide(d.applied[-1], d.galleries[-1], face, MONDAY_NOON).granted for d in doors)
        t0 = time.monotonic()
        centre.directory.remove_member("all", "Carol", OP)
        assert set(centre.policy.refresh()) == {"door-a", "door-b", "door-c"}
        assert _in_sync(centre)
        took = time.monotonic() - t0
        for d in doors:
            assert d.running_version() == 2 and d.applied[-1].person(pid) is None
            assert decide(d.applied[-1], d.galleries[-1], face, MONDAY_NOON).reason == "unknown"
        print(f"revocation acked by 3 doors in {took:.2f} s")
        # deleting the person for good leaves nothing of them at the centre
        centre.directory.delete_person("Carol", OP)
        assert centre.directory.people() == []
    finally:
        for d in doors:
            d.stop_agent()


def test_tampered_misdirected_or_old_bundles_are_refused_by_the_door(centre, fleet_broker, distributor, tmp_path):
    a, b = _doors(centre, fleet_broker, tmp_path, "door-a", "door-b")
    attacker = Sniffer(fleet_broker, CENTRAL_USER, [])  # worst case: a party able to publish there
    try:
        centre.directory.add_person("Dan", OP)
        centre.directory.enroll("Dan", [_face(5)], OP)
        centre.directory.add_group("g", OP)
        centre.directory.add_member("g", "Dan", OP)
        centre.directory.grant("g", "door-a", OP)
        centre.directory.grant("g", "door-b", OP)
        centre.policy.refresh()
        assert _in_sync(centre)
        v1_a = a.agent.store.path.read_bytes()
        centre.directory.remove_member("g", "Dan", OP)
        centre.policy.refresh()
        assert _in_sync(centre)
        assert a.running_version() == 2
        distributor.stop()  # the attacker's messages must not be overwritten by a re-send during the test

        def refused(n: int) -> bool:
            return wait_until(lambda: a.agent.stats["refused"] >= n, 10)

        # 1. a body edited after signing (Dan put back in, version bumped)
        d = json.loads(v1_a)
        d["body"]["version"] = 99
        attacker.publish("facelock/door-a/policy", json.dumps(d).encode(), retain=True)
        assert refused(1) and a.agent.last_refusal == "bad_signature"
        # 2. door-b's genuine bundle replayed to door-a
        attacker.publish("facelock/door-a/policy", b.agent.store.path.read_bytes(), retain=True)
        assert refused(2) and a.agent.last_refusal == "wrong_door"
        # 3. door-a's own genuine but old bundle (Dan still allowed): a rollback
        attacker.publish("facelock/door-a/policy", v1_a, retain=True)
        assert refused(3) and a.agent.last_refusal == "rollback"
        # 4. junk and an unsigned bundle
        attacker.publish("facelock/door-a/policy", b"\xff" * 100, retain=True)
        assert refused(4) and a.agent.last_refusal == "malformed"
        attacker.publish("facelock/door-a/policy", json.dumps({"body": d["body"]}).encode(), retain=True)
        assert refused(5) and a.agent.last_refusal == "malformed"
        # 5. a re-signed bundle under another key
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from central.policy import sign_bundle
        attacker.publish("facelock/door-a/policy", sign_bundle(Ed25519PrivateKey.generate(), d["body"]), retain=True)
        assert refused(6) and a.agent.last_refusal == "bad_signature"
        assert a.running_version() == 2 and a.agent.stats["applied"] == 2
        # 6. the bundle file at rest, edited on the door's disk: refused when loaded
        raw = json.loads(a.agent.store.path.read_bytes())
        raw["body"]["lockdown"] = "off" if raw["body"]["lockdown"] == "nobody" else "nobody"
        a.agent.store.path.write_text(json.dumps(raw))
        with pytest.raises(BundleRejected):
            a.store().current()
        with pytest.raises(BundleRejected):
            verify_bundle(json.dumps(d).encode(), centre.keys.public_key(), "door-a")
    finally:
        attacker.close()
        a.stop_agent(), b.stop_agent()


def test_a_door_offline_during_a_push_catches_up(centre, fleet_broker, distributor, tmp_path):
    a, b = _doors(centre, fleet_broker, tmp_path, "door-a", "door-b")
    try:
        face = _face(6)
        centre.directory.add_person("Eve", OP)
        centre.directory.enroll("Eve", [face], OP)
        centre.directory.add_group("g", OP)
        centre.directory.add_member("g", "Eve", OP)
        centre.directory.grant("g", "door-a", OP)
        centre.directory.grant("g", "door-b", OP)
        centre.policy.refresh()
        assert _in_sync(centre)
        b.stop_agent()
        centre.directory.remove_member("g", "Eve", OP)  # the revocation happens while B is away
        centre.policy.refresh()
        assert wait_until(lambda: a.running_version() == 2, 10)
        time.sleep(1.5)  # several retry periods: the centre keeps trying B
        st = {s["door"]: s for s in centre.policy.status()}
        assert st["door-a"]["in_sync"] and not st["door-b"]["in_sync"] and st["door-b"]["sends"] >= 3
        assert b.running_version() == 1
        # the broker dies too and forgets its retained messages: the centre's re-send still gets through
        fleet_broker.kill()
        fleet_broker.start()
        b.start_agent(fleet_broker.host, fleet_broker.port)
        assert _in_sync(centre, 20)
        assert b.running_version() == 2 and b.applied[-1].people == ()
        assert not decide(b.applied[-1], b.galleries[-1], face, MONDAY_NOON).granted
    finally:
        a.stop_agent(), b.stop_agent()
