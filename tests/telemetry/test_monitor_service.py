"""The central monitor against a real broker: storage de-duplicated by id, malformed payloads counted and
survived, alert rules, console + webhook notifications, shared subscription, and the CLI views."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from click.testing import CliRunner

from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.events import encode, make_event
from firmware.telemetry.outbox import Outbox
from provisioning.cli import main as cli
from provisioning.monitor.notify import ConsoleNotifier, WebhookNotifier
from provisioning.monitor.rules import AlertRules
from provisioning.monitor.service import MonitorService, receipt_body
from provisioning.monitor.store import MonitorStore
from provisioning.mosquitto import LocalBroker
from tests.support.mqtt_broker import Sniffer, device_config, monitor_config, wait_until


class Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a) -> None:
        pass


def test_receipt_body_is_what_json_dumps_would_write() -> None:
    ids = [(e.seq, e.id) for e in (make_event("door-1", "heartbeat").with_seq(n) for n in (1, 2, 77))]
    for entries in (ids, ids[:1], []):
        body = receipt_body(entries)
        assert body == json.dumps({"v": 1, "events": entries}, separators=(",", ":")).encode()
        assert json.loads(body) == {"v": 1, "events": [list(e) for e in entries]}


def test_rules_are_pure_and_sensible() -> None:
    rules = AlertRules()
    ev = [make_event("d1", "access_denied", ts=100 + i) for i in range(3)]
    assert [a.rule for e in ev[:2] for a in rules.on_event(e)] == []
    assert [a.rule for a in rules.on_event(ev[2])] == ["denied_burst"]
    # Spread over more than 60 s: no burst.
    slow = AlertRules()
    assert not [a for i in range(5) for a in slow.on_event(make_event("d1", "access_denied", ts=100 + 61 * i))]
    assert [a.rule for a in rules.on_event(make_event("d1", "spoof_suspected"))] == ["spoof_suspected"]
    rules.on_availability("d1", "offline", 1000.0)
    assert rules.tick(1100.0) == []
    assert [a.rule for a in rules.tick(1121.0)] == ["device_offline"]
    assert rules.tick(1200.0) == []  # once
    rules.on_availability("d1", "online", 1300.0)
    assert rules.tick(2000.0) == []


def test_monitor_stores_dedups_alerts_and_survives_garbage(broker: LocalBroker, tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hook.received = []
    console = io.StringIO()
    db = tmp_path / "monitor.db"
    store = MonitorStore(db)
    webhook = WebhookNotifier(f"http://127.0.0.1:{server.server_port}/alerts")
    mon = MonitorService(monitor_config(broker, db, offline_after_s=1.0), store,
                         [ConsoleNotifier(console), webhook])
    mon.start()
    raw = Sniffer(broker, "door-9", [])  # a device identity publishing raw payloads
    try:
        assert mon.wait_connected(10)
        wait_until(lambda: False, timeout=0.3)
        good = make_event("door-9", "tamper", reason="case_opened").with_seq(1)
        for _ in range(3):  # the same event three times: stored once
            raw.publish("facelock/door-9/event/tamper", encode(good))
        bad_version = json.loads(encode(make_event("door-9", "tamper").with_seq(2)))
        bad_version["v"] = 99
        wrong_types = json.loads(encode(make_event("door-9", "tamper").with_seq(3)))
        wrong_types["seq"] = "three"
        garbage = [
            b"not json at all",
            json.dumps(wrong_types).encode(),
            b"[" * 50_000 + b"]" * 50_000,
            json.dumps(bad_version).encode(),
            b"\xff" * 2_000_000,
            encode(make_event("door-8", "tamper").with_seq(1)),  # payload names another device
        ]
        for g in garbage:
            raw.publish("facelock/door-9/event/tamper", g)
        for i in range(3):
            raw.publish("facelock/door-9/event/access_denied",
                        encode(make_event("door-9", "access_denied", reason="no_match").with_seq(10 + i)))
        assert wait_until(lambda: store.counters().get("malformed", 0) >= len(garbage))
        assert wait_until(lambda: store.event_count() == 4)
        counters = store.counters()
        assert counters["malformed_version"] == 1 and counters["malformed_topic_mismatch"] == 1
        assert counters["malformed_decode"] == 4
        assert wait_until(lambda: {a["rule"] for a in store.alerts()} >= {"tamper", "denied_burst"})
        # The device says offline (its last will would say the same) and stays away > offline_after_s.
        raw.publish("facelock/door-9/availability", b"offline")
        assert wait_until(lambda: "device_offline" in {a["rule"] for a in store.alerts()}, timeout=20)
        assert wait_until(lambda: len(Hook.received) >= 3)
        assert {h["facelock_alert"]["rule"] for h in Hook.received} >= {"tamper", "denied_burst", "device_offline"}
        assert "ALERT tamper device=door-9" in console.getvalue()
        assert sum(1 for a in store.alerts() if a["rule"] == "tamper") == 1  # duplicates never re-alert
    finally:
        raw.close()
        mon.stop()
        webhook.close()
        server.shutdown()

    # The CLI views read the same store.
    rep = CliRunner().invoke(cli, ["monitor", "report", "--json", "--db", str(db)])
    assert rep.exit_code == 0, rep.output
    data = json.loads(rep.output)
    assert data["events_total"] == 4
    assert data["events_per_device"]["door-9"]["by_type"] == {"access_denied": 3, "tamper": 1}
    assert data["alerts_per_rule"]["tamper"]["by_device"] == {"door-9": 1}
    assert data["counters"]["malformed"] == len(garbage)
    tail = CliRunner().invoke(cli, ["monitor", "tail", "--no-follow", "--db", str(db)])
    assert tail.exit_code == 0 and "tamper" in tail.output and "ALERT" in tail.output
    missing = CliRunner().invoke(cli, ["monitor", "report", "--db", str(tmp_path / "nope.db")])
    assert missing.exit_code == 1 and "no monitor store" in missing.output


def test_two_monitors_share_the_load_and_receipts_empty_the_outbox(broker: LocalBroker, tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    stores = [MonitorStore(db), MonitorStore(db)]
    mons = [MonitorService(monitor_config(broker, db, client_id=f"mon-{i}"), stores[i], []) for i in range(2)]
    for m in mons:
        m.start()
    ob = Outbox(tmp_path / "o.db")
    dev = TelemetryClient(device_config(broker, "door-3"), ob)
    try:
        assert all(m.wait_connected(10) for m in mons)
        wait_until(lambda: False, timeout=0.3)
        dev.start()
        ids = {ob.put(make_event("door-3", "access_granted", user_id=f"u{i}")).id for i in range(400)}
        assert wait_until(lambda: stores[0].event_count() == 400, timeout=30)
        assert wait_until(lambda: len(ob) == 0, timeout=30)  # every event receipted end to end
        assert all(m.stats["stored"] > 0 for m in mons), [dict(m.stats) for m in mons]  # both took a share
        assert sum(m.stats["stored"] for m in mons) == 400
        got = {e["id"] for _, e in stores[0].events_after(0, 1000)}
        assert got == ids
    finally:
        dev.stop()
        for m in mons:
            m.stop()
