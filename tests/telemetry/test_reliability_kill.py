"""Acceptance: 10,000 events, broker SIGKILLed and restarted >= 5 times at random moments, the device
process SIGKILLed and restarted >= 2 times: the monitor's store ends with exactly 10,000 distinct events
(seq 1..10000), none lost, none duplicated, and the device's outbox drains."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provisioning.mosquitto import MONITOR_USER, LocalBroker
from tests.support.mqtt_broker import device_config, wait_until

TOTAL = 10_000
RATE = 700.0  # events/s while producing: ~14 s, long enough for every kill to land mid-stream
REPO = Path(__file__).resolve().parents[2]


def _sql(db: Path, query: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute(query).fetchone()
        return int(row[0] or 0) if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


@pytest.mark.slow
def test_ten_thousand_events_survive_broker_and_device_kills(broker: LocalBroker, tmp_path: Path) -> None:
    rnd = random.Random(int.from_bytes(os.urandom(4), "big"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    mon_db, outbox_db = tmp_path / "monitor.db", tmp_path / "outbox.db"
    mf = broker.pki.client(MONITOR_USER)
    toml = tmp_path / "monitor.toml"
    toml.write_text(
        "[monitor]\n"
        f'host = "{broker.host}"\nport = {broker.port}\nca_file = "{broker.pki.ca}"\n'
        f'cert_file = "{mf.cert}"\nkey_file = "{mf.key}"\ndb = "{mon_db}"\n'
        "backoff_min_s = 0.1\nbackoff_max_s = 1.0\nconsole = false\n")
    monitor = subprocess.Popen([sys.executable, "-m", "provisioning.cli", "monitor", "run", "--config", str(toml)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=open(tmp_path / "monitor.log", "wb"))
    cfg = dataclasses.asdict(device_config(broker, "rel-dev", backoff_min_s=0.1, backoff_max_s=1.0,
                                           receipt_timeout_s=5.0))

    def start_device() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(REPO / "tests/support/device_driver.py"), json.dumps(cfg), str(outbox_db),
             str(TOTAL), str(RATE)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "device.log", "ab"))

    # Events ever created = the outbox's high-water seq (in the table, or recorded by the deletes).
    produced = lambda: _sql(outbox_db, "select max(coalesce((select max(seq) from events), 0), "  # noqa: E731
                                       "coalesce((select value from meta where key='max_seq'), 0))")
    device = start_device()
    broker_kills = device_kills = 0
    try:
        assert wait_until(lambda: produced() > 300, timeout=30), "device never started producing"
        next_device_kill = [TOTAL * 0.3, TOTAL * 0.65]
        while produced() < TOTAL:
            time.sleep(rnd.uniform(0.6, 1.6))
            if produced() >= TOTAL:
                break
            broker.kill()
            broker_kills += 1
            time.sleep(rnd.uniform(0.05, 0.8))
            if next_device_kill and produced() >= next_device_kill[0]:
                next_device_kill.pop(0)
                device.send_signal(signal.SIGKILL)
                device.wait(10)
                device_kills += 1
                device = start_device()
            broker.start()
        assert broker_kills >= 5 and device_kills >= 2, (broker_kills, device_kills)
        # One more kill after production finished, with everything still in flight.
        broker.kill()
        broker_kills += 1
        time.sleep(0.3)
        broker.start()

        done = wait_until(lambda: _sql(mon_db, "select count(*) from events") >= TOTAL
                          and _sql(outbox_db, "select count(*) from events") == 0, timeout=180, step=0.5)
        stored = _sql(mon_db, "select count(*) from events")
        assert done, (f"stored {stored}/{TOTAL}, outbox left {_sql(outbox_db, 'select count(*) from events')}; "
                      f"{(tmp_path / 'monitor.log').read_text()[-1500:]}")
        assert stored == TOTAL
        assert _sql(mon_db, "select count(distinct id) from events") == TOTAL
        assert _sql(mon_db, "select count(distinct seq) from events where device='rel-dev'") == TOTAL
        assert _sql(mon_db, "select min(seq) from events") == 1
        assert _sql(mon_db, "select max(seq) from events") == TOTAL
        assert produced() == TOTAL
        dups = _sql(mon_db, "select value from counters where name='duplicates'")
        print(f"broker kills={broker_kills} device kills={device_kills} duplicates de-duplicated={dups}")
    finally:
        device.send_signal(signal.SIGKILL)
        device.wait(10)
        monitor.terminate()
        try:
            monitor.wait(10)
        except subprocess.TimeoutExpired:
            monitor.kill()
