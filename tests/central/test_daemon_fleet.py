"""The centre's policy reaching a real lock daemon (facelockd with ``[fleet] enabled = true``).

Real parts only: PostgreSQL and the centre (tests/central/conftest.py), mosquitto with mutual TLS and the
centre's accounts/ACL, the centre's distributor, and ``python -m firmware`` as a subprocess with the replay
camera (a live person in front of it), MockFactory GPIO, the shipped models and liveness.  The lock is
onboarded with the CLI: `facelock device fleet-csr` (its keystore's X25519 template key and a fresh TLS
key in one CSR), signed by the centre with a one-time token, `facelock device fleet-install`.

Enrolled at the centre and granted the door -> pushed -> the daemon acks -> the face unlocks; a tampered,
misdirected and rolled-back bundle on the topic is refused and the door keeps its policy, also across a
restart (and with its stored bundle edited on disk); a lockdown from the centre is in force and on the
state topic; the person removed from the group -> the daemon acks the new version -> the same face is
refused.  The time from the centre's revoke to the refusal being in force is printed.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from central.app import Centre
from central.broker import CENTRAL_USER
from central.policy import sign_bundle
from firmware import fsutil
from firmware.audit import AuditLog
from firmware.hw.camera.replay import write_replay_folder
from provisioning import demofaces as df
from provisioning.mosquitto import LocalBroker
from tests.support.cli import facelock
from tests.support.daemon import daemon_env, start, status, wait_status, write_config
from tests.support.mqtt_broker import Sniffer, wait_until

DEVICE = "kill-test"  # the device id tests.support.daemon.write_config uses
OP = "op-fleet"
UP = ("IDLE", "VERIFYING", "DENIED", "LOCKOUT")  # up and deciding (the face is in view from the start)



def _onboard(centre: Centre, tmp_path: Path, broker: LocalBroker) -> Path:
    """The installer's path: `facelock device fleet-csr` on the lock (its keystore's X25519 key and a new
    TLS key in one CSR), the centre signs it with a one-time token (what `facelock-central devices submit
    --out` writes), `facelock device fleet-install` puts the answer in place and writes the [mqtt] +
    [fleet] section, which goes into the lock's config.  Returns the config file."""
    cfg = write_config(tmp_path, unlock_s=0.4)
    data = tmp_path / "data"
    facelock(data, "device", "fleet-csr", "--id", DEVICE, config=cfg)
    e = centre.registry.submit((data / "device" / "fleet.csr").read_bytes(), centre.registry.create_token(OP))
    assert e.status == "active"
    answer = tmp_path / "answer"
    fsutil.make_private_dir(answer)
    for name, text in (("device.pem", e.cert_pem), ("ca.pem", e.ca_pem), ("central.pub", e.centre_pub_pem)):
        fsutil.atomic_write(answer / name, text.encode(), 0o644)
    # another lock's answer is refused before anything is written
    facelock(tmp_path / "other", "device", "fleet-csr", "--id", "door-x", config=cfg)
    r = facelock(tmp_path / "other", "device", "fleet-install", answer, "--broker", "h:1", config=cfg, ok=False)
    assert r.returncode != 0 and "not for this lock's TLS key" in r.stderr
    facelock(data, "device", "fleet-install", answer, "--broker", f"{broker.host}:{broker.port}", config=cfg)
    snippet = (data / "device" / "mqtt.toml").read_text()
    assert "[fleet]\nenabled = true" in snippet
    snippet = snippet.replace("[mqtt]\n", "[mqtt]\nbackoff_min_s = 0.05\nbackoff_max_s = 0.5\nrequire_receipt = false\n")
    return write_config(tmp_path, unlock_s=0.4, extra=snippet)


def _audit(data: Path) -> list:
    with AuditLog(data / "audit.db", readonly=True) as log:
        return list(log.records())


def _acks(sn: Sniffer) -> list[dict]:
    return [json.loads(m.payload) for m in list(sn.messages) if m.topic.endswith("/policy/ack")]


def _states(sn: Sniffer) -> list[dict]:
    return [json.loads(m.payload) for m in list(sn.messages) if m.topic.endswith("/state")]


def _acked(centre: Centre, version: int, timeout: float = 30.0) -> bool:
    return wait_until(lambda: centre.policy.status()[0]["acked_version"] >= version, timeout)


def _grants_after(data: Path, t0: float) -> list:
    return [r for r in _audit(data) if r.kind == "granted" and r.ts >= t0]


def _stop(p) -> str:
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-3000:]
    return err


@pytest.mark.slow
def test_centre_policy_reaches_the_real_daemon(centre, fleet_broker, distributor, tmp_path):
    from firmware.vision import FacePipeline

    pipe = FacePipeline.from_manifest(num_threads=1)
    base = df.near("astronaut")
    write_replay_folder(tmp_path / "frames", df.live_person(base, pipe.process(base).primary.mesh.points, 40, seed=1))
    embs = [r.embedding for r in map(pipe.process, df.enrolled()) if r.embedding is not None]
    mean = np.mean(np.stack(embs), axis=0)
    del pipe
    cfg = _onboard(centre, tmp_path, fleet_broker)
    data = tmp_path / "data"
    centre.directory.add_door(DEVICE, "Front door", OP,
                              settings={"unlock_s": 1.0, "liveness": "off", "volume": 3})
    pid = centre.directory.add_person("Eileen", OP)
    centre.directory.enroll("Eileen", [mean / np.linalg.norm(mean)], OP)
    centre.directory.add_group("crew", OP)
    centre.directory.add_member("crew", "Eileen", OP)
    centre.directory.grant("crew", DEVICE, OP)
    watch = Sniffer(fleet_broker, CENTRAL_USER, [f"facelock/{DEVICE}/policy/ack", f"facelock/{DEVICE}/state"])
    env = daemon_env(tmp_path)
    p = start(cfg, env=env)
    try:
        assert wait_status(data, p.pid, timeout=120)["state"] in UP
        assert wait_until(lambda: any(a["status"] == "running" for a in _acks(watch)), 30)

        # 1. pushed -> acked by the daemon -> the centre's person unlocks
        assert centre.policy.refresh() == {DEVICE: 1}
        assert _acked(centre, 1)
        assert wait_until(lambda: any(a["status"] == "applied" and a["version"] == 1 for a in _acks(watch)), 10)
        applied = [r for r in _audit(data) if r.kind == "fleet_policy_applied"]
        assert applied[-1].data["version"] == 1 and applied[-1].data["added"] == 1
        # within the lock's bounds: unlock_s taken; liveness "off" is weaker than the lock's "auto"; an
        # unknown setting is not taken either
        assert applied[-1].data["ignored_settings"] == "liveness,volume"
        t_v1 = time.time()
        assert wait_until(lambda: _grants_after(data, t_v1), 60), "the centre's person was never let in"
        # at rest: the bundle file (still sealed) and users.db hold no embedding in the clear
        vec = (mean / np.linalg.norm(mean)).astype("<f4").tobytes()
        at_rest = b"".join(f.read_bytes() for f in data.rglob("*") if f.is_file())
        assert vec[:64] not in at_rest and pid.encode() in (data / "fleet" / "policy.bundle").read_bytes()

        # 2. tampered, misdirected and rolled-back bundles on the topic: refused, the policy stays
        v1 = (data / "fleet" / "policy.bundle").read_bytes()
        attacker = Sniffer(fleet_broker, CENTRAL_USER, [])
        try:
            forged = json.loads(v1)
            forged["body"]["version"], forged["body"]["people"] = 99, []
            attacker.publish(f"facelock/{DEVICE}/policy", json.dumps(forged).encode(), retain=True)
            assert wait_until(lambda: any(a.get("reason") == "bad_signature" for a in _acks(watch)), 20)
            # genuinely signed by the centre, for another door
            other = json.loads(v1)["body"]
            other["door"], other["version"] = "door-b", 50
            attacker.publish(f"facelock/{DEVICE}/policy", sign_bundle(centre.keys.signing_key(), other), retain=True)
            assert wait_until(lambda: any(a.get("reason") == "wrong_door" for a in _acks(watch)), 20)
        finally:
            attacker.close()
        refusals = [r for r in _audit(data) if r.kind == "fleet_policy_refused"]
        assert len(refusals) >= 2 and all(r.data["running"] == 1 for r in refusals)
        t_tamper = time.time()
        assert wait_until(lambda: _grants_after(data, t_tamper), 30), "the tampered bundle changed the policy"
        assert centre.policy.status()[0]["acked_version"] == 1
    finally:
        _stop(p)

    # 3. across a restart, with the stored bundle edited on the SD card: refused at start, moved aside;
    # the lock keeps the people it applied (and the retained forged bundle is refused again)
    raw = json.loads((data / "fleet" / "policy.bundle").read_bytes())
    raw["body"]["lockdown"] = "nobody"
    (data / "fleet" / "policy.bundle").write_text(json.dumps(raw))
    p = start(cfg, env=env)
    try:
        assert wait_status(data, p.pid, timeout=120)["state"] in UP
        t_restart = time.time()
        assert wait_until(lambda: _grants_after(data, t_restart), 60), "the last good policy was lost at restart"
        assert (data / "fleet" / "policy.bundle.rejected").exists()
        assert any(r.kind == "fleet_policy_refused" and r.data.get("at") == "start" for r in _audit(data))
        assert status(data)["lockdown"] == "off"  # the edit on disk did nothing

        # 4. a lockdown from the centre: in force on the lock and on its retained state topic
        centre.directory.set_lockdown(DEVICE, "nobody", OP)
        assert centre.policy.refresh() == {DEVICE: 2}
        assert _acked(centre, 2)
        assert wait_status(data, p.pid, lambda s: s["lockdown"] == "nobody", 10)
        assert wait_until(lambda: _states(watch) and _states(watch)[-1]["lockdown"] is True, 10)
        # the genuine v1 replayed now is a rollback: refused, the lockdown stays
        attacker = Sniffer(fleet_broker, CENTRAL_USER, [])
        try:
            attacker.publish(f"facelock/{DEVICE}/policy", v1, retain=True)
            assert wait_until(lambda: any(a.get("reason") == "rollback" for a in _acks(watch)), 20)
        finally:
            attacker.close()
        assert status(data)["lockdown"] == "nobody" and centre.policy.status()[0]["acked_version"] == 2
        t_ld = time.time()
        assert wait_until(lambda: any(r.kind == "denied" and r.data.get("reason") == "lockdown" and r.ts >= t_ld
                                      for r in _audit(data)), 30), "the person was not refused for the lockdown"
        assert not _grants_after(data, t_ld)
        centre.directory.set_lockdown(DEVICE, "off", OP)
        assert centre.policy.refresh() == {DEVICE: 3}
        assert _acked(centre, 3)
        assert wait_status(data, p.pid, lambda s: s["lockdown"] == "off", 10)
        assert wait_until(lambda: _states(watch)[-1]["lockdown"] is False, 10)
        t_v3 = time.time()
        assert wait_until(lambda: _grants_after(data, t_v3), 60)

        # 5. removed from the group at the centre -> pushed -> acked -> the same face is refused
        t_revoke = time.time()
        centre.directory.remove_member("crew", "Eileen", OP)
        assert centre.policy.refresh() == {DEVICE: 4}
        assert _acked(centre, 4)
        t_acked = time.time()
        applied = [r for r in _audit(data) if r.kind == "fleet_policy_applied" and r.data["version"] == 4]
        assert applied and applied[0].data["removed"] == 1
        # users.db committed without them: the relay's last check (is_active) refuses from here on
        in_force = applied[0].data["committed"]
        assert wait_until(lambda: [r for r in _audit(data) if r.kind == "users_reloaded" and r.ts >= in_force - 0.05], 5)
        reload = next(r for r in _audit(data) if r.kind == "users_reloaded" and r.ts >= in_force - 0.05)
        assert reload.data["users"] == 0
        time.sleep(2.0)  # the person is still in front of the camera
        late = [r for r in _grants_after(data, in_force)]
        assert not late, f"granted after the revocation was in force: {late}"
        assert any(r.kind in ("denied", "lockout") and r.ts >= in_force for r in _audit(data))
        assert status(data)["relay_energized"] is False
        print(json.dumps({"centre_revoke_to_refusal_in_force_s": round(in_force - t_revoke, 3),
                          "centre_revoke_to_gallery_reloaded_s": round(reload.ts - t_revoke, 3),
                          "centre_revoke_to_ack_seen_s": round(t_acked - t_revoke, 3)}))
        assert in_force - t_revoke < 5.0
    finally:
        err = _stop(p)
        watch.close()
    assert pid.encode() not in b"".join(f.read_bytes() for f in data.glob("audit.db*"))
    assert "Traceback" not in err, err[-3000:]
    with AuditLog(data / "audit.db", readonly=True) as log:
        assert log.verify().ok
