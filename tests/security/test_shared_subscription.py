"""Issue 11, item 4: a device credential must not be able to steal the monitor's events.

The monitor consumes events through an MQTT v5 shared subscription (`$share/<group>/facelock/+/event/#`);
mosquitto hands each message to one member of the group, so any client that joins the group takes a share
and those events never reach the monitor's store.  Attack, against a real mosquitto with the project's
broker config and the real monitor (`facelock monitor run` in a subprocess): one stolen device certificate
("shed") opens R rogue connections, each subscribing the shared filter under the old default group name
and under the monitor's real one (as if the attacker had learnt it), plus other devices' topics; door-1
then sends N tamper events.  Every event must be in the store within 5 s and the rogues must get nothing.

Second line of defence: should an event go missing anyway (here: published while the monitor was away), the
monitor sees the hole in door-1's `seq`, raises `events_missing` and has the device resend it, long before
the device's own receipt timeout.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox
from provisioning.monitor.service import MonitorService
from provisioning.monitor.store import MonitorStore
from provisioning.mosquitto import MONITOR_USER, LocalBroker
from tests.support.mqtt_broker import Sniffer, broker_fixture, device_config, monitor_config, wait_until

REPO = Path(__file__).resolve().parents[2]
ROGUES = 9
EVENTS = 20


@pytest.fixture()
def broker(tmp_path: Path):
    yield from broker_fixture(tmp_path)


def _stored(db: Path, device: str, type_: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as c:
        try:
            return c.execute("select count(*) from events where device=? and type=?", (device, type_)).fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_rogue_device_connections_cannot_take_a_share_of_the_events(broker: LocalBroker, tmp_path: Path) -> None:
    mon = broker.pki.client(MONITOR_USER)
    db = tmp_path / "monitor.db"
    cfg = monitor_config(broker, db)
    real_group = cfg.effective_group() if hasattr(cfg, "effective_group") else cfg.group
    monitor = subprocess.Popen(
        [sys.executable, "-m", "provisioning.cli", "monitor", "run", "--quiet", "--host", broker.host, "--port",
         str(broker.port), "--ca", str(broker.pki.ca), "--cert", str(mon.cert), "--key", str(mon.key),
         "--db", str(db)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    filters = [f"$share/{g}/facelock/+/event/#" for g in ("facelock", real_group)]
    filters += ["facelock/door-1/#", "facelock/+/event/#", "#", "$share/facelock/#"]
    rogues: list[Sniffer] = []
    outbox = Outbox(tmp_path / "door-1-outbox.db")
    door = TelemetryClient(device_config(broker, "door-1"), outbox)  # default receipt_timeout_s (30 s)
    try:
        # Let the monitor subscribe first (it must not be beaten to the group either way).
        probe = Outbox(tmp_path / "probe-outbox.db")
        prober = TelemetryClient(device_config(broker, "probe-1", receipt_timeout_s=0.5), probe)
        prober.start()
        probe.put(make_event("probe-1", "heartbeat"))
        assert wait_until(lambda: _stored(db, "probe-1", "heartbeat") == 1, 30), monitor.stderr
        prober.stop()
        probe.close()
        rogues = [Sniffer(broker, "shed", filters) for _ in range(ROGUES)]
        granted = [str(rc) for r in rogues for rc in r.granted]
        door.start()
        assert door.wait_connected(10)
        t0 = time.monotonic()
        for i in range(EVENTS):
            outbox.put(make_event("door-1", "tamper", reason=f"t{i}"))
        wait_until(lambda: _stored(db, "door-1", "tamper") >= EVENTS, 5.0)
        stored = _stored(db, "door-1", "tamper")
        elapsed = time.monotonic() - t0
        stolen = sum(len(r.messages) for r in rogues)
    finally:
        for r in rogues:
            r.close()
        door.stop()
        outbox.close()
        monitor.terminate()
        monitor.wait(30)
    print(f"events stored: {stored} of {EVENTS} in {elapsed:.1f} s with {ROGUES} rogue connections; "
          f"delivered to rogues: {stolen}; rogue SUBACKs: {sorted(set(granted))}")
    assert stolen == 0
    assert stored == EVENTS, f"only {stored} of {EVENTS} events reached the monitor's store within 5 s"
    assert all("Not authorized" in g for g in granted), f"the broker let a device subscribe: {set(granted)}"


def test_a_missing_seq_raises_events_missing_and_the_device_resends(broker: LocalBroker, tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    outbox = Outbox(tmp_path / "door-1-outbox.db")
    # A long receipt timeout: the device would resend on its own only after 120 s.
    door = TelemetryClient(device_config(broker, "door-1", receipt_timeout_s=120.0), outbox)
    store = MonitorStore(db)
    mon = MonitorService(monitor_config(broker, db), store, [])
    mon.start()
    door.start()
    try:
        assert mon.wait_connected(10) and door.wait_connected(10)
        time.sleep(0.3)
        for i in range(4):
            outbox.put(make_event("door-1", "access_denied", reason=f"d{i}"))
        assert wait_until(lambda: store.event_count() == 4, 15)
        mon.stop()  # the monitor is away: the broker acknowledges seq 5 and has nobody to give it to
        outbox.put(make_event("door-1", "tamper", reason="while away"))
        assert wait_until(lambda: door.stats["pubacks"] >= 5, 10)
        mon = MonitorService(monitor_config(broker, db), store, [])
        mon.start()
        assert mon.wait_connected(10)
        time.sleep(0.3)
        t0 = time.monotonic()
        for i in range(5):
            outbox.put(make_event("door-1", "access_granted", user_id=f"u{i}"))
        filled = wait_until(lambda: store.event_count() == 10, 30)
        took = time.monotonic() - t0
        alerts = [a for a in store.alerts() if a["rule"] == "events_missing"]
    finally:
        door.stop()
        mon.stop()
        outbox.close()
    print(f"gap at seq 5 filled: {filled} after {took:.1f} s; alerts: {alerts}; "
          f"device resent on request: {door.stats.get('resent_on_request', 0)}")
    assert alerts and alerts[0]["device"] == "door-1" and "seq 5" in alerts[0]["detail"]
    assert filled and took < 60, "the missing event was not resent before the device's own receipt timeout"
    assert door.stats.get("resent_on_request", 0) >= 1
    store.close()
