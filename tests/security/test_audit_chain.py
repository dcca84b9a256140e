"""Issue 11 item 8: the audit log against someone who can write its file, and against a rooted lock.

(1) An intruder with the data dir (no access to the keystore's secrets) drops the append-only triggers,
edits, deletes or replaces records and recomputes the hash chain with the code's own recipe; the
installer's ``facelock audit verify`` (a real process) must say BROKEN.  The log is written by the real
daemon.  (2) A rooted lock also has the chain key and rewrites the history consistently, so the local
check passes; the chain heads the lock published in heartbeats (real daemon -> real mosquitto with TLS ->
real monitor service and store) must expose it: the monitor raises ``audit_rewritten`` at the next
heartbeat, and ``audit verify --monitor-db`` fails.

On the code before the fix (a5da335): verify said OK after each rewrite in (1), and no heartbeat was ever
published, so (2) saw nothing.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware.audit import AuditLog, record_hash
from provisioning.mosquitto import LocalBroker
from tests.lock.test_daemon import calibrated_env  # noqa: F401
from tests.lock.test_daemon_remote import DEVICE, mqtt_section
from tests.support.daemon import start, wait_status, write_config
from tests.support.mqtt_broker import broker_fixture, monitor_config, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def broker(tmp_path: Path):
    yield from broker_fixture(tmp_path)


def run_daemon(cfg: Path, env: dict, data: Path, until=lambda: True, timeout: float = 30.0) -> None:
    p = start(cfg, env=env)
    try:
        wait_status(data, p.pid, lambda s: s["state"] == "IDLE")
        assert wait_until(until, timeout)
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
    assert p.returncode == 0


def audit_verify(cfg: Path, data: Path, *extra: str) -> tuple[int, dict]:
    p = subprocess.run([sys.executable, "-m", "provisioning.cli", "audit", "verify", "--config", str(cfg),
                        "--data-dir", str(data), "--json", *extra], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])


def rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    out = con.execute("SELECT seq, ts, kind, data, prev, hash FROM audit ORDER BY seq").fetchall()
    con.close()
    return out


def rewrite(db: Path, new_rows: list[tuple], hasher) -> None:
    """What an intruder with the file does: drop the triggers, write the rows back with a recomputed chain."""
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER IF EXISTS audit_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    con.execute("DELETE FROM audit")
    prev = "0" * 64
    for i, (_seq, ts, kind, data, _prev, _h) in enumerate(new_rows, start=1):
        h = hasher(i, ts, kind, data, prev)
        con.execute("INSERT INTO audit VALUES (?,?,?,?,?,?)", (i, ts, kind, data, prev, h))
        prev = h
    con.commit()
    con.close()


def _edit(rs: list[tuple], index: int = 2) -> list[tuple]:
    rs = list(rs)
    seq, ts, kind, data, prev, h = rs[index]
    rs[index] = (seq, ts, kind, json.dumps({**json.loads(data), "note": "nothing happened here"}), prev, h)
    return rs


ATTACKS = {
    "edit_and_rehash": _edit,
    "delete_and_rehash": lambda rs: rs[:2] + rs[3:],
    "replace_history": lambda rs: [(0, time.time(), "boot", "{}", "", "")],
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_rewritten_log_fails_verify(tmp_path, calibrated_env, attack):  # noqa: F811
    cfg = write_config(tmp_path)
    data = tmp_path / "data"
    db = data / "audit.db"
    run_daemon(cfg, calibrated_env, data)
    run_daemon(cfg, calibrated_env, data)  # two boots: a history worth rewriting
    code, res = audit_verify(cfg, data)
    assert code == 0 and res["ok"] and res["authenticated"] and res["records"] >= 4, res
    rewrite(db, ATTACKS[attack](rows(db)), record_hash)
    code, res = audit_verify(cfg, data)
    assert code == 3 and not res["ok"], (attack, res)


def test_rooted_lock_rewriting_with_the_key_is_caught_by_the_monitor(tmp_path, broker: LocalBroker,
                                                                     calibrated_env):  # noqa: F811
    from provisioning.monitor.service import MonitorService
    from provisioning.monitor.store import MonitorStore

    extra = mqtt_section(broker) + "heartbeat_s = 0.3\n"
    cfg = write_config(tmp_path, extra=extra)
    data = tmp_path / "data"
    db = data / "audit.db"
    mdb = tmp_path / "monitor.db"
    store = MonitorStore(mdb)
    mon = MonitorService(monitor_config(broker, mdb), store, [])
    mon.start()
    try:
        assert mon.wait_connected(10)
        run_daemon(cfg, calibrated_env, data, lambda: len(store.heartbeat_data(DEVICE)) >= 3)
        beats = store.heartbeat_data(DEVICE)
        assert all(len(d["audit_head"]) == 64 and d["audit_seq"] >= 1 for _, d in beats)
        assert any("audit_anchor_seq" in d for _, d in beats)
        assert store.alerts() == []
        code, res = audit_verify(cfg, data, "--monitor-db", str(mdb), "--device", DEVICE)
        assert code == 0 and res["anchors_checked"] >= 1, res

        from firmware.audit import chain_key, record_mac
        from firmware.keystore import KeystoreConfig

        # Rooted: unseal the chain key like the daemon does, rewrite the boot record (already published in a
        # heartbeat's head) and re-MAC the whole chain.
        published = max(d["audit_seq"] for _, d in beats)
        boot = next(r[0] for r in rows(db) if r[2] == "boot")
        assert boot <= published
        key = chain_key(data, KeystoreConfig(scrypt_log2_n=10), create=False)
        assert key is not None
        rewrite(db, _edit(rows(db), boot - 1), lambda *a: record_mac(key, *a))
        code, res = audit_verify(cfg, data)
        assert code == 0 and res["ok"]  # consistent: the local check alone cannot see it

        n_alerts = len(store.alerts())
        run_daemon(cfg, calibrated_env, data,
                   lambda: any(a["rule"] == "audit_rewritten" for a in store.alerts()[n_alerts:]), 20)
        alert = next(a for a in store.alerts() if a["rule"] == "audit_rewritten")
        assert alert["device"] == DEVICE
        code, res = audit_verify(cfg, data, "--monitor-db", str(mdb), "--device", DEVICE)
        assert code == 3 and "heartbeat" in res["reason"], res
    finally:
        mon.stop()
        store.close()


def test_legacy_log_is_sealed_by_the_marker_and_unkeyed_appends_are_named(tmp_path) -> None:
    """A log from before the key: its records stay valid, an edit of them breaks the marker's link, and a
    record appended later without the key is reported."""
    db = tmp_path / "audit.db"
    with AuditLog(db) as log:
        for i in range(4):
            log.append("old", i=i)
    key = b"k" * 32
    with AuditLog(db, key=key) as log:
        log.append("new", i=4)
        res = log.verify()
        assert res.ok and res.authenticated and res.legacy == 4 and res.checked == 6
    with AuditLog(db) as log:  # someone appends without the key
        log.append("forged")
    with AuditLog(db, readonly=True) as log:
        res = log.verify(key=key)
        assert not res.ok and res.bad_seq == 7 and "not authenticated" in res.reason
        assert not log.verify(key=b"x" * 32).ok  # another key authenticates nothing
    keyed_tail = rows(db)[4:6]  # the marker and the keyed record after it, kept verbatim
    rs = rows(db)[:4]
    rs[1] = (*rs[1][:3], '{"i":99}', *rs[1][4:])
    rewrite(db, rs, record_hash)  # the legacy part edited and re-hashed consistently...
    con = sqlite3.connect(db)
    con.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?)", keyed_tail)
    con.commit()
    con.close()
    with AuditLog(db, readonly=True) as log:
        res = log.verify(key=key)
        assert not res.ok and res.bad_seq == 5 and "link" in res.reason  # ...but the marker sealed its head


def test_monitor_restart_keeps_the_published_heads(tmp_path) -> None:
    from firmware.telemetry.events import make_event
    from provisioning.monitor.audit_anchors import AuditAnchors

    first = make_event("door-1", "heartbeat", audit_seq=5, audit_head="a" * 64).with_seq(1)
    later = make_event("door-1", "heartbeat", audit_seq=9, audit_head="c" * 64, audit_anchor_seq=5,
                       audit_anchor_head="b" * 64).with_seq(2)
    shorter = make_event("door-1", "heartbeat", audit_seq=3, audit_head="d" * 64).with_seq(3)
    anchors = AuditAnchors()
    anchors.seed([("door-1", dict(first.data))])  # what the store held when the monitor started
    assert [r for r, _ in anchors.on_heartbeat(later)] == ["audit_rewritten"]
    assert [r for r, _ in anchors.on_heartbeat(shorter)] == ["audit_anchor_missing", "audit_rewound"]
    unknown = make_event("door-1", "heartbeat", audit_seq=12, audit_head="e" * 64, audit_anchor_seq=11,
                         audit_anchor_head="f" * 64).with_seq(4)
    assert [r for r, _ in anchors.on_heartbeat(unknown)] == ["audit_anchor_unknown"]
    fresh = AuditAnchors()  # a device's first heartbeat (no state yet) alerts nothing
    assert fresh.on_heartbeat(first) == []
