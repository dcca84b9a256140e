"""Without a receipt an event is published again (same id, same bytes); the monitor's receipt ends it."""

from __future__ import annotations

from pathlib import Path

from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.events import decode, make_event
from firmware.telemetry.outbox import Outbox
from provisioning.monitor.service import MonitorService
from provisioning.monitor.store import MonitorStore
from provisioning.mosquitto import MONITOR_USER, LocalBroker
from tests.support.mqtt_broker import Sniffer, device_config, monitor_config, wait_until


def test_unreceipted_event_is_resent_with_the_same_id(broker: LocalBroker, tmp_path: Path) -> None:
    watcher = Sniffer(broker, MONITOR_USER, ["facelock/door-4/event/#"])
    ob = Outbox(tmp_path / "o.db")
    dev = TelemetryClient(device_config(broker, "door-4", receipt_timeout_s=1.0), ob)
    dev.start()
    mon = None
    try:
        assert dev.wait_connected(10)
        e = ob.put(make_event("door-4", "tamper", reason="case_opened"))
        # No monitor yet: PUBACKed but never receipted -> published again after receipt_timeout_s.
        assert watcher.wait_for(lambda ms: len(ms) >= 2, timeout=10)
        copies = [m.payload for m in watcher.messages]
        assert all(p == copies[0] for p in copies) and decode(copies[0]).id == e.id
        assert len(ob) == 1
        db = tmp_path / "m.db"
        store = MonitorStore(db)
        mon = MonitorService(monitor_config(broker, db), store, [])
        mon.start()
        assert wait_until(lambda: len(ob) == 0, timeout=15)  # receipted -> deleted
        assert store.event_count() == 1
        n = len(watcher.messages)
        wait_until(lambda: False, timeout=2.0)
        assert len(watcher.messages) == n  # and no more resends
    finally:
        dev.stop()
        if mon is not None:
            mon.stop()
        watcher.close()
