"""Monitoring in the centre's database (real PostgreSQL, real mosquitto): the lock's outbox and the
existing monitor service, storing through central.monitor_store.  A broker SIGKILLed mid-stream and a
database restarted mid-stream lose nothing and store nothing twice (idempotent by event id)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from central.app import Centre
from central.broker import central_files
from central.models import EventRow
from central.monitor_store import SqlMonitorStore
from central.pgserver import LocalPostgres
from central.simdoor import SimDoor
from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox
from provisioning.monitor.config import MonitorConfig
from provisioning.monitor.service import MonitorService
from tests.central.conftest import start_broker
from tests.support.mqtt_broker import wait_until

N_DOORS, PER_DOOR, RATE = 3, 1000, 400.0  # events/s per door while producing (~2.5 s of stream)


def _counts(centre: Centre) -> tuple[int, int, int]:
    try:
        with centre.db.session() as s:
            return (s.scalar(select(func.count()).select_from(EventRow)),
                    s.scalar(select(func.count(func.distinct(EventRow.event_id)))),
                    s.scalar(select(func.count()).select_from(
                        select(EventRow.device, EventRow.seq).distinct().subquery())))
    except Exception:  # noqa: BLE001 - the database may be down at this moment
        return (-1, -1, -1)


def _run_stream(centre: Centre, broker, tmp_path: Path, disrupt) -> dict:
    cf = central_files(broker)
    mon = MonitorService(MonitorConfig(host=broker.host, port=broker.port, ca_file=str(broker.pki.ca),
                                       cert_file=str(cf.cert), key_file=str(cf.key), console=False,
                                       backoff_min_s=0.05, backoff_max_s=0.5), SqlMonitorStore(centre.db))
    mon.start()
    assert mon.wait_connected(10)
    doors, clients, outboxes = [], [], []
    for i in range(N_DOORS):
        d = SimDoor(tmp_path / f"door-{i}", f"door-{i}")
        d.install(centre.registry.submit(d.csr(), centre.registry.create_token("op")))
        cfg = dataclasses.replace(d.mqtt_config(broker.host, broker.port), receipt_timeout_s=2.0)
        ob = Outbox(tmp_path / f"door-{i}" / "outbox.db")
        c = TelemetryClient(cfg, ob)
        c.start()
        doors.append(d), clients.append(c), outboxes.append(ob)

    def produce(ob: Outbox, device: str) -> None:
        t0 = time.monotonic()
        for n in range(PER_DOOR):
            ob.put(make_event(device, "access_granted" if n % 5 else "access_denied", user_id="u1", n=n))
            ahead = (n + 1) / RATE - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    threads = [threading.Thread(target=produce, args=(ob, d.id)) for ob, d in zip(outboxes, doors, strict=True)]
    try:
        for t in threads:
            t.start()
        disrupt()
        for t in threads:
            t.join(60)
        total = N_DOORS * PER_DOOR
        ok = wait_until(lambda: _counts(centre)[0] >= total and all(len(ob) == 0 for ob in outboxes), 120, 0.25)
        rows, distinct_ids, distinct_seq = _counts(centre)
        # On failure, say where the events are: still in an outbox (and why: the clients' counters), or
        # stored twice; and what the broker saw.
        assert ok, (rows, [len(ob) for ob in outboxes], dict(mon.stats), [c.stats for c in clients],
                    broker.log_tail(1500))
        assert rows == distinct_ids == distinct_seq == total  # 0 lost, 0 duplicated
        with centre.db.session() as s:
            for d in doors:
                seqs = s.scalars(select(EventRow.seq).where(EventRow.device == d.id)).all()
                assert sorted(seqs) == list(range(1, PER_DOOR + 1))
        print(f"stored {rows}; monitor stats {dict(mon.stats)}")
        return {"monitor": dict(mon.stats), "clients": [dict(c.stats) for c in clients]}
    finally:
        for c in clients:
            c.stop()
        mon.stop()


def test_broker_sigkilled_mid_stream_loses_nothing(centre: Centre, tmp_path: Path) -> None:
    broker = start_broker(centre, tmp_path / "broker")

    def disrupt() -> None:
        for _ in range(3):
            time.sleep(0.6)
            broker.kill()
            time.sleep(0.3)
            broker.start()

    try:
        stats = _run_stream(centre, broker, tmp_path, disrupt)
        assert broker.starts >= 4
        # the kills really hit the stream: every door had to reconnect
        assert all(s["connects"] >= 2 for s in stats["clients"]), stats
    finally:
        broker.stop()


def test_database_restarted_mid_stream_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pg = LocalPostgres()
    pg.start()
    try:
        centre = Centre(tmp_path / "centre", pg.url)
        centre.init()
        broker = start_broker(centre, tmp_path / "broker")
    except BaseException:
        pg.destroy()
        raise
    restarts = []

    def disrupt() -> None:
        for _ in range(2):
            time.sleep(0.7)
            pg.restart(down_s=0.8)
            restarts.append(1)

    try:
        with caplog.at_level(logging.ERROR, logger="facelock.monitor"):
            _run_stream(centre, broker, tmp_path, disrupt)
        assert len(restarts) == 2
        # the outage really hit the stream: batches failed to store (and were resent, see above)
        assert any("DatabaseUnavailable" in (r.exc_text or "") or r.exc_info and
                   r.exc_info[0].__name__ == "DatabaseUnavailable" for r in caplog.records)
    finally:
        broker.stop()
        centre.close()
        pg.destroy()


def test_the_store_is_idempotent_by_event_id(centre: Centre) -> None:
    store = SqlMonitorStore(centre.db)
    evs = [make_event("door-1", "access_granted").with_seq(i + 1) for i in range(5)]
    from firmware.telemetry.events import encode

    items = [(e, encode(e)) for e in evs]
    assert len(store.insert_events(items[:3])) == 3
    assert [e.id for e in store.insert_events(items + items[:1])] == [e.id for e in evs[3:]]
    assert store.event_count() == 5 and store.counters()["duplicates"] == 4


@pytest.mark.parametrize("kind", ["availability"])
def test_availability_and_counters(centre: Centre, kind: str) -> None:
    store = SqlMonitorStore(centre.db)
    store.set_availability("door-1", "online", 1.0)
    store.set_availability("door-1", "offline", 2.0)
    store.count_malformed("decode")
    r = store.report()
    assert r["devices"]["door-1"] == {"availability": "offline", "changed_at": 2.0}
    assert r["counters"] == {"malformed": 1, "malformed_decode": 1}

